//! The v1 API over real HTTP: replies parsed by a real XML parser (roxmltree) and as
//! JSON, every routing and parameter form real clients use, and hostile input.

use std::time::{Duration, Instant};

use opsq_domain::AccountAlias;
use opsq_store::{ApiKey, JobOutcome};
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::Value;

use crate::harness::{claim_one, TestServer};

const KEY_PASSWORD: &str = "v1 key password";

async fn add_key(server: &TestServer, key: &str, account: &str) {
    server
        .store
        .create_api_key(ApiKey {
            key: key.into(),
            account: AccountAlias::parse(account).unwrap(),
            password_hash: opsq_server::auth::hash_password(KEY_PASSWORD).unwrap(),
        })
        .await
        .unwrap();
}

struct V1Reply {
    http: u16,
    headers: HeaderMap,
    text: String,
}

impl V1Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Parses the XML with a strict parser and returns (root name, root attributes).
    fn xml_root(&self) -> (String, Vec<(String, String)>) {
        let document =
            roxmltree::Document::parse(&self.text).unwrap_or_else(|e| panic!("not XML ({e}): {}", self.text));
        let root = document.root_element();
        let attributes = root.attributes().map(|a| (a.name().to_string(), a.value().to_string())).collect();
        (root.tag_name().name().to_string(), attributes)
    }

    fn xml_attr(&self, name: &str) -> String {
        let (_, attributes) = self.xml_root();
        attributes.into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_default()
    }

    fn status_code(&self) -> i64 {
        if self.text.trim_start().starts_with('<') {
            self.xml_attr("StatusCode").parse().unwrap()
        } else {
            self.json()["StatusCode"].as_i64().unwrap()
        }
    }

    fn cookie(&self) -> Option<String> {
        let header = self.headers.get(SET_COOKIE)?.to_str().ok()?.to_string();
        assert!(header.contains("HttpOnly"), "{header}");
        let pair = header.split(';').next()?.to_string();
        pair.strip_prefix("Tier3.API.Cookie=").filter(|v| !v.is_empty()).map(|_| pair.clone())
    }
}

async fn call(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    cookie: Option<&str>,
) -> V1Reply {
    let mut request = server.http.post(server.url(path)).body(body.to_string());
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let reply = V1Reply {
        http: response.status().as_u16(),
        headers: response.headers().clone(),
        text: String::new(),
    };
    let text = response.text().await.unwrap();
    let reply = V1Reply { text, ..reply };
    assert!(reply.headers.contains_key("deprecation"), "every v1 reply is marked deprecated");
    assert!(reply.headers["link"].to_str().unwrap().contains("rel=\"successor-version\""));
    assert!(reply.headers["link"].to_str().unwrap().contains("</v2/"));
    reply
}

async fn logon(server: &TestServer, key: &str) -> String {
    let reply =
        call(server, &format!("/REST/Auth/Logon/JSON?APIKey={key}&Password={KEY_PASSWORD}"), None, "", None)
            .await;
    assert_eq!(reply.status_code(), 0, "{}", reply.text);
    reply.cookie().expect("logon sets Tier3.API.Cookie")
}

#[tokio::test]
async fn logon_accepts_query_json_xml_and_form_and_refuses_bad_keys_with_100() {
    let server = TestServer::start().await;
    add_key(&server, "key1", "OPSQ").await;

    // The Python SDK: POST /REST//Auth/logon?APIKey=..&Password=.. and reads XML.
    let query = call(
        &server,
        &format!("/REST//Auth/logon?APIKey=key1&Password={KEY_PASSWORD}"),
        Some("application/x-www-form-urlencoded"),
        "",
        None,
    )
    .await;
    assert_eq!(query.http, 200);
    let (root, _) = query.xml_root();
    assert_eq!(root, "LogonResponse");
    assert_eq!(query.xml_attr("Success"), "true");
    assert_eq!(query.xml_attr("StatusCode"), "0");
    assert!(query.cookie().is_some());

    let json = call(
        &server,
        "/REST/Auth/Logon/",
        Some("application/json; charset=utf-8"),
        &format!(r#"{{"APIKey":"key1","Password":"{KEY_PASSWORD}"}}"#),
        None,
    )
    .await;
    assert_eq!(json.json()["Success"], true, "a JSON body without suffix answers JSON");
    assert_eq!(json.json()["Message"], "Login Successful");

    let xml = call(
        &server,
        "/rest/auth/logon/xml",
        Some("text/xml"),
        &format!("<LogonRequest><APIKey>key1</APIKey><Password>{KEY_PASSWORD}</Password></LogonRequest>"),
        None,
    )
    .await;
    assert_eq!(xml.status_code(), 0);

    let form = call(
        &server,
        "/REST/Auth/Logon/JSON",
        Some("application/x-www-form-urlencoded"),
        &format!("APIKey=key1&Password={}", KEY_PASSWORD.replace(' ', "+")),
        None,
    )
    .await;
    assert_eq!(form.status_code(), 0, "{}", form.text);

    for (key, password) in [("key1", "wrong"), ("nokey", KEY_PASSWORD)] {
        let bad =
            call(&server, &format!("/REST/Auth/Logon/JSON?APIKey={key}&Password={password}"), None, "", None)
                .await;
        assert_eq!(bad.http, 200);
        assert_eq!(bad.json()["StatusCode"], 100);
        assert_eq!(bad.json()["Success"], false);
        assert!(bad.cookie().is_none());
    }
}

#[tokio::test]
async fn get_request_status_renders_the_recorded_shapes_in_json_and_xml() {
    let server = TestServer::start().await;
    add_key(&server, "key1", "OPSQ").await;
    let cookie = logon(&server, "key1").await;
    let token = server.admin_token().await;
    let id = server.submit(&token, "OPSQ", "server.powerOn").await;
    server.wait_for(&token, "OPSQ", &id, opsq_domain::JobStatus::Succeeded).await;
    let number: i64 = id.split('-').nth(1).unwrap().parse().unwrap();

    for body in [format!(r#"{{"RequestID":{number}}}"#), format!(r#"{{"RequestID":"{number}"}}"#)] {
        let reply = call(
            &server,
            "/REST/Queue/GetRequestStatus/JSON",
            Some("application/json"),
            &body,
            Some(&cookie),
        )
        .await;
        let json = reply.json();
        assert_eq!(json["StatusCode"], 0, "{json}");
        assert_eq!(json["Message"], "Request Status successfully retrieved.");
        let details = &json["RequestDetails"];
        assert_eq!(details["RequestID"], number);
        assert_eq!(details["RequestTitle"], "server.powerOn");
        assert_eq!(details["CurrentStatus"], "Succeeded");
        assert_eq!(details["PercentComplete"], 100);
        assert!(details["StepNumber"].is_number() && details["ProgressDesc"].is_string());
        let date = details["StatusDate"].as_str().unwrap();
        assert!(date.starts_with("/Date(") && date.ends_with(")/"), "{date}");
        assert!(
            reply.text.contains(r#""StatusDate":"\/Date("#),
            "slashes are escaped on the wire: {}",
            reply.text
        );
        assert!(reply.headers["link"]
            .to_str()
            .unwrap()
            .contains(&format!("/v2/operations/opsq/status/{id}")));
    }

    let reply = call(
        &server,
        "/REST/Queue/GetRequestStatus",
        Some("text/xml"),
        &format!("<QueueStatusRequest><RequestID>{number}</RequestID></QueueStatusRequest>"),
        Some(&cookie),
    )
    .await;
    let document = roxmltree::Document::parse(&reply.text).unwrap();
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "QueueStatusResponse");
    assert_eq!(root.attribute("Success"), Some("true"));
    let details = root.children().find(|n| n.has_tag_name("RequestDetails")).expect("RequestDetails");
    assert_eq!(details.attribute("RequestID"), Some(number.to_string().as_str()));
    assert_eq!(details.attribute("CurrentStatus"), Some("Succeeded"));
    let date = details.attribute("StatusDate").unwrap();
    assert_eq!(date.len(), "2010-05-28T18:48:49.527".len(), "{date}");
    assert!(chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S%.3f").is_ok(), "{date}");
}

#[tokio::test]
async fn current_status_uses_the_v1_vocabulary() {
    let server = TestServer::start().await;
    add_key(&server, "key1", "OPSQ").await;
    let cookie = logon(&server, "key1").await;
    let token = server.admin_token().await;
    let waiting = server.submit(&token, "OPSQ", "v1.wait").await;
    let failing = server.submit(&token, "OPSQ", "v1.fail").await;
    let (code, body) = server
        .post_json(
            &token,
            "/v2/operations/OPSQ/jobs",
            &serde_json::json!({"kind": "v1.unsafe", "safeToRepeat": false}),
        )
        .await;
    assert_eq!(code, 202);
    let unsafe_id = body["id"].as_str().unwrap().to_string();
    let failed = server.store.claim(claim_one("v1.fail", "w")).await.unwrap().remove(0);
    server
        .store
        .finish(failed.job.number, &failed.lease_token, JobOutcome::Fatal("broken".into()))
        .await
        .unwrap();
    server.store.claim(claim_one("v1.unsafe", "gone:")).await.unwrap();
    server.store.rescue(Some("gone:".into())).await.unwrap();

    for (id, expected) in [(&waiting, "Not Started"), (&failing, "Failed"), (&unsafe_id, "Executing")] {
        let number = id.split('-').nth(1).unwrap();
        let reply = call(
            &server,
            &format!("/REST/Queue/GetRequestStatus/JSON?RequestID={number}"),
            None,
            "",
            Some(&cookie),
        )
        .await;
        assert_eq!(reply.json()["RequestDetails"]["CurrentStatus"], expected, "{}", reply.text);
        if id == &unsafe_id {
            let progress = reply.json()["RequestDetails"]["ProgressDesc"].as_str().unwrap().to_string();
            assert!(progress.contains("reconciled"), "{progress}");
        }
    }
}

#[tokio::test]
async fn unknown_foreign_and_malformed_ids_and_missing_sessions_get_their_codes() {
    let server = TestServer::start().await;
    server.add_account("OTHER", "WA1", None).await;
    add_key(&server, "key1", "OPSQ").await;
    add_key(&server, "other", "OTHER").await;
    let cookie = logon(&server, "key1").await;
    let other_cookie = logon(&server, "other").await;
    let token = server.admin_token().await;
    let id = server.submit(&token, "OPSQ", "v1.wait").await;
    let number = id.split('-').nth(1).unwrap();

    let get = |query: String, cookie: Option<String>| {
        let server = &server;
        async move {
            call(server, &format!("/REST/Queue/GetRequestStatus/JSON?{query}"), None, "", cookie.as_deref())
                .await
        }
    };
    let unknown = get("RequestID=999999".into(), Some(cookie.clone())).await;
    assert_eq!(unknown.json()["StatusCode"], 900);
    assert!(unknown.json().get("RequestDetails").is_none());
    let foreign = get(format!("RequestID={number}"), Some(other_cookie)).await;
    assert_eq!(foreign.json()["StatusCode"], 900, "another tree's job is invisible");
    for bad in
        ["RequestID=abc", "RequestID=-1", "RequestID=1.5", "", &format!("RequestID={}", "9".repeat(3000))]
    {
        let reply = get(bad.to_string(), Some(cookie.clone())).await;
        assert_eq!(reply.http, 200);
        assert_eq!(reply.json()["StatusCode"], 3, "{bad}: {}", reply.text);
    }
    let no_session = get(format!("RequestID={number}"), None).await;
    assert_eq!(no_session.json()["StatusCode"], 100);
    let forged = get(format!("RequestID={number}"), Some("Tier3.API.Cookie=forged".into())).await;
    assert_eq!(forged.json()["StatusCode"], 100);

    // Logout ends the session.
    let out = call(&server, "/REST/Auth/Logout/JSON", None, "", Some(&cookie)).await;
    assert_eq!(out.json()["StatusCode"], 0);
    let after = get(format!("RequestID={number}"), Some(cookie)).await;
    assert_eq!(after.json()["StatusCode"], 100);
}

#[tokio::test]
async fn list_queue_requests_filters_by_item_status_type_newest_first() {
    let server = TestServer::start().await;
    add_key(&server, "key1", "OPSQ").await;
    let cookie = logon(&server, "key1").await;
    let token = server.admin_token().await;
    let done = server.submit(&token, "OPSQ", "server.reboot").await;
    server.wait_for(&token, "OPSQ", &done, opsq_domain::JobStatus::Succeeded).await;
    let pending = server.submit(&token, "OPSQ", "v1.wait").await;
    let failing = server.submit(&token, "OPSQ", "v1.fail").await;
    let claimed = server.store.claim(claim_one("v1.fail", "w")).await.unwrap().remove(0);
    server
        .store
        .finish(claimed.job.number, &claimed.lease_token, JobOutcome::Fatal("x".into()))
        .await
        .unwrap();
    let number = |id: &String| id.split('-').nth(1).unwrap().parse::<i64>().unwrap();

    let list = |kind: &'static str| {
        let (server, cookie) = (&server, cookie.clone());
        async move {
            let reply = call(
                server,
                "/REST/Queue/ListQueueRequests/JSON",
                Some("application/json"),
                &format!(r#"{{"ItemStatusType":"{kind}"}}"#),
                Some(&cookie),
            )
            .await;
            let json = reply.json();
            assert_eq!(json["StatusCode"], 0, "{json}");
            json["Requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["RequestID"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("1").await, vec![number(&failing), number(&pending), number(&done)]);
    assert_eq!(list("2").await, vec![number(&pending)]);
    assert_eq!(list("3").await, vec![number(&done)]);
    assert_eq!(list("4").await, vec![number(&failing)]);

    let xml = call(
        &server,
        "/REST/Queue/ListQueueRequests/XML",
        Some("text/xml"),
        "<ListQueueItemsRequest><ItemStatusType>1</ItemStatusType></ListQueueItemsRequest>",
        Some(&cookie),
    )
    .await;
    let document = roxmltree::Document::parse(&xml.text).unwrap();
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "ListQueueItemsResponse");
    let items: Vec<_> = root.descendants().filter(|n| n.has_tag_name("QueueItem")).collect();
    assert_eq!(items.len(), 3);
    assert!(root.children().any(|n| n.has_tag_name("Requests")));
    assert_eq!(items[0].attribute("CurrentStatus"), Some("Failed"));

    for bad in ["0", "5", "x", ""] {
        let reply = call(
            &server,
            &format!("/REST/Queue/ListQueueRequests/JSON?ItemStatusType={bad}"),
            None,
            "",
            Some(&cookie),
        )
        .await;
        assert_eq!(reply.json()["StatusCode"], 901, "{bad}");
    }
}

#[tokio::test]
async fn account_alias_reaches_sub_accounts_only() {
    let server = TestServer::start().await;
    server.add_account("SUB", "CA3", Some("OPSQ")).await;
    server.add_account("SIDE", "WA1", None).await;
    server.add_user("sub-admin", "SUB", &["ServerAdmin"]).await;
    add_key(&server, "parent", "OPSQ").await;
    add_key(&server, "child", "SUB").await;
    let parent = logon(&server, "parent").await;
    let child = logon(&server, "child").await;
    let sub_token = server.token("sub-admin", crate::harness::PASSWORD).await;
    let sub_job = server.submit(&sub_token, "SUB", "v1.wait").await;
    let admin = server.admin_token().await;
    let root_job = server.submit(&admin, "OPSQ", "v1.wait").await;
    let n = |id: &String| id.split('-').nth(1).unwrap().to_string();

    let get = |query: String, cookie: &String| {
        let (server, cookie) = (&server, cookie.clone());
        async move {
            call(server, &format!("/REST/Queue/GetRequestStatus/JSON?{query}"), None, "", Some(&cookie))
                .await
                .json()
        }
    };
    assert_eq!(get(format!("RequestID={}&AccountAlias=SUB", n(&sub_job)), &parent).await["StatusCode"], 0);
    assert_eq!(get(format!("RequestID={}&AccountAlias=sub", n(&sub_job)), &parent).await["StatusCode"], 0);
    assert_eq!(get(format!("RequestID={}&AccountAlias=OPSQ", n(&root_job)), &child).await["StatusCode"], 101);
    assert_eq!(
        get(format!("RequestID={}&AccountAlias=SIDE", n(&root_job)), &parent).await["StatusCode"],
        101
    );
    assert_eq!(get(format!("RequestID={}&AccountAlias=NOPE", n(&root_job)), &parent).await["StatusCode"], 5);
    assert_eq!(get(format!("RequestID={}", n(&root_job)), &child).await["StatusCode"], 900);
    let listed = call(
        &server,
        "/REST/Queue/ListQueueRequests/JSON?ItemStatusType=1&AccountAlias=SUB",
        None,
        "",
        Some(&parent),
    )
    .await
    .json();
    let ids: Vec<i64> =
        listed["Requests"].as_array().unwrap().iter().map(|r| r["RequestID"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![n(&sub_job).parse::<i64>().unwrap()], "only the sub-account's jobs");
    let child_list =
        call(&server, "/REST/Queue/ListQueueRequests/JSON?ItemStatusType=1", None, "", Some(&child))
            .await
            .json();
    assert_eq!(
        child_list["Requests"].as_array().unwrap().len(),
        1,
        "a sub-account never sees its parent's jobs"
    );
}

#[tokio::test]
async fn hostile_xml_is_refused_fast_and_never_reads_a_file() {
    let server = TestServer::start().await;
    add_key(&server, "key1", "OPSQ").await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "TOP-SECRET-CONTENT").unwrap();
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">{}]><LogonRequest><APIKey>&lol9;</APIKey><Password>x</Password></LogonRequest>",
        (1..10).map(|i| format!("<!ENTITY lol{i} \"{}\">", format!("&lol{};", if i == 1 { String::new() } else { (i - 1).to_string() }).repeat(10))).collect::<String>()
    );
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY xxe SYSTEM \"file://{}\">]><LogonRequest><APIKey>&xxe;</APIKey><Password>x</Password></LogonRequest>",
        secret_file.path().display()
    );
    for body in [
        laughs,
        xxe,
        "<LogonRequest><APIKey>&xxe;</APIKey></LogonRequest>".into(),
        "<LogonRequest><APIKey>".into(),
        "<<<>>>".into(),
    ] {
        let started = Instant::now();
        let reply = call(&server, "/REST/Auth/Logon/XML", Some("text/xml"), &body, None).await;
        assert!(started.elapsed() < Duration::from_secs(2), "refused in milliseconds");
        assert_eq!(reply.http, 200);
        assert_eq!(reply.status_code(), 3, "{}", reply.text);
        assert!(!reply.text.contains("TOP-SECRET"));
    }
}

#[tokio::test]
async fn malformed_and_oversized_requests_never_get_a_server_error() {
    let server = TestServer::start().await;
    add_key(&server, "key1", "OPSQ").await;
    let cookie = logon(&server, "key1").await;
    for (content_type, body) in [
        ("application/json", "{nope"),
        ("application/json", "[1,2]"),
        ("application/json", r#"{"RequestID":{"a":1}}"#),
        ("text/xml", "<a><b></a>"),
    ] {
        let reply =
            call(&server, "/REST/Queue/GetRequestStatus/JSON", Some(content_type), body, Some(&cookie)).await;
        assert_eq!(
            (reply.http, reply.json()["StatusCode"].as_i64()),
            (200, Some(3)),
            "{body}: {}",
            reply.text
        );
    }
    let big = format!(r#"{{"RequestID":"{}"}}"#, "1".repeat(2 * 1024 * 1024));
    let reply =
        call(&server, "/REST/Queue/GetRequestStatus/JSON", Some("application/json"), &big, Some(&cookie))
            .await;
    assert_eq!((reply.http, reply.json()["StatusCode"].as_i64()), (413, Some(3)), "{}", reply.text);
    assert!(reply.json()["Message"].as_str().unwrap().contains("larger than"), "{}", reply.text);
    let unknown = call(&server, "/REST/Server/GetServers/JSON", None, "", Some(&cookie)).await;
    assert_eq!(unknown.http, 404);
    assert_eq!(unknown.json()["Success"], false);
    let routes = ["/REST/Queue/GetRequestStatus/JSON/extra", "/REST", "/rest/queue"];
    for route in routes {
        let reply = call(&server, route, None, "", Some(&cookie)).await;
        assert!(reply.http == 404 && reply.status_code() > 0, "{route}");
    }
}
