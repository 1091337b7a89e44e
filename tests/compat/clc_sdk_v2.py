"""Drives opsq with the real `clc-sdk` 2.51 package (the CenturyLink Cloud Python SDK),
exactly as its users call it: global credentials, batch power operations waited to
completion, and a form-encoded session login.

Environment: OPSQ_URL (base URL), OPSQ_USER, OPSQ_PASSWORD, OPSQ_ALIAS.
Exits non-zero with a message on the first failed expectation.
"""
import os
import sys

import clc
import requests

base = os.environ["OPSQ_URL"]
user = os.environ["OPSQ_USER"]
password = os.environ["OPSQ_PASSWORD"]
alias = os.environ["OPSQ_ALIAS"]

clc.defaults.ENDPOINT_URL_V2 = base


def check(condition, message):
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)


# 1. Global credentials (JSON login), a batch power-on of two servers, waited on.
clc.v2.SetCredentials(user, password)
servers = ["WA1%sWEB01" % alias, "WA1%sWEB02" % alias]
requests_ = clc.v2.Servers(servers, alias=alias).PowerOn()
check(len(requests_.requests) == 2, "two requests queued, got %d" % len(requests_.requests))
failures = requests_.WaitUntilComplete()
check(failures == 0, "PowerOn().WaitUntilComplete() returned %r, expected 0" % failures)
for request in requests_.requests:
    check(request.Status() == "succeeded", "request %s ended %r" % (request.id, request.Status()))
check(clc.ALIAS == alias, "login set clc.ALIAS to %r" % clc.ALIAS)
check(clc.LOCATION == "WA1", "login set clc.LOCATION to %r" % clc.LOCATION)

# 2. A session from get_session (form-encoded login), used for another operation.
session = clc.v2.get_session(user, password)
check(session["alias"] == alias and session["token"], "get_session returned %r" % {k: session[k] for k in ("alias", "location")})
rebooted = clc.v2.Servers(["WA1%sDB01" % alias], alias=alias, session=session).Reboot()
check(rebooted.WaitUntilComplete() == 0, "Reboot().WaitUntilComplete() != 0")

# 3. createSnapshot goes out form-encoded with a scalar serverIds.
snap = clc.v2.API.Call("POST", "operations/%s/servers/createSnapshot" % alias,
                       {"serverIds": "WA1%sWEB01" % alias, "snapshotExpirationDays": 7})
check(isinstance(snap, list) and snap[0]["isQueued"] is True, "createSnapshot answered %r" % snap)
check(clc.v2.Requests(snap, alias=alias).WaitUntilComplete() == 0, "createSnapshot did not succeed")

# 4. Bad credentials raise the SDK's own "Invalid V2 API login" error.
try:
    clc.v2.get_session(user, "not the password")
    check(False, "a wrong password was accepted")
except Exception as error:  # the SDK raises a bare Exception
    check("Invalid V2 API login" in str(error), "unexpected error %r" % error)

# 5. An unknown status id is a 404 the SDK reports, never a 500.
r = requests.get("%s/v2/operations/%s/status/wa1-999999" % (base, alias),
                 headers={"Authorization": "Bearer " + session["token"]})
check(r.status_code == 404, "unknown id answered %d" % r.status_code)

print("clc-sdk v2 compatibility: 5 passed, 0 failed")
