"""Drives opsq's deprecated v1 API with the real `clc-sdk` 2.51 package's own v1
client: clc.v1.SetCredentials, clc.v1.Queue.GetStatus and clc.v1.Queue.List for each
type. The SDK logs on with POST /REST//Auth/logon?APIKey=..&Password=.. and parses the
XML reply, then calls /REST/<path>/JSON with the session cookie.

Environment: OPSQ_URL, OPSQ_API_KEY, OPSQ_API_PASSWORD, OPSQ_DONE_ID (a succeeded
job number), OPSQ_PENDING_ID (a waiting job number), OPSQ_FAILED_ID (a failed one).
"""
import os
import sys

import clc

clc.defaults.ENDPOINT_URL_V1 = os.environ["OPSQ_URL"] + "/REST/"
done_id = int(os.environ["OPSQ_DONE_ID"])
pending_id = int(os.environ["OPSQ_PENDING_ID"])
failed_id = int(os.environ["OPSQ_FAILED_ID"])
passed = 0


def check(condition, message):
    global passed
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)
    passed += 1


clc.v1.SetCredentials(os.environ["OPSQ_API_KEY"], os.environ["OPSQ_API_PASSWORD"])

details = clc.v1.Queue.GetStatus(done_id)
check(details is not None, "GetStatus returned nothing (logon or call failed)")
check(clc._LOGIN_COOKIE_V1 and "Tier3.API.Cookie" in clc._LOGIN_COOKIE_V1, "the SDK kept the Tier3.API.Cookie")
check(details["RequestID"] == done_id, "RequestID %r" % details.get("RequestID"))
check(details["CurrentStatus"] == "Succeeded", "CurrentStatus %r" % details.get("CurrentStatus"))
check(details["PercentComplete"] == 100, "PercentComplete %r" % details.get("PercentComplete"))
check(details["StatusDate"].startswith("/Date("), "StatusDate %r" % details.get("StatusDate"))
check(clc.v1.Queue.GetStatus(str(pending_id))["CurrentStatus"] == "Not Started", "pending job")

expected = {"All": {done_id, pending_id, failed_id}, "Pending": {pending_id}, "Complete": {done_id}, "Error": {failed_id}}
for kind, ids in expected.items():
    listed = clc.v1.Queue.List(kind)
    got = {item["RequestID"] for item in listed}
    check(got == ids, "Queue.List(%r) gave %r, expected %r" % (kind, sorted(got), sorted(ids)))

# An unknown RequestID is an API error (code 900), which the SDK raises (its own
# error handling rewords every non-zero code as "Server response 200").
try:
    clc.v1.Queue.GetStatus(99999999)
    check(False, "an unknown RequestID was accepted")
except Exception as error:
    check("Error calling Queue/GetRequestStatus" in str(error), "unexpected error %r" % error)

print("clc-sdk v1 compatibility: %d passed, 0 failed" % passed)
