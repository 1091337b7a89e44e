//! `GET /dashboard`: the operators' web page and its script and style sheet, their
//! security headers, and the API calls the script makes, checked against the server's
//! own OpenAPI document so that a renamed or removed route the page uses fails here.

use std::collections::BTreeSet;

use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use serde_json::json;

use crate::harness::{split, TestServer, ROOT};

/// The script as embedded in the binary, for the checks that need no server.
const SCRIPT: &str = include_str!("../../src/dashboard/app.js");

struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
}

async fn fetch(server: &TestServer, path: &str) -> Answer {
    let response = server.http.get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer { status, headers, text: response.text().await.unwrap() }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|value| value.to_str().unwrap()).unwrap_or_else(|| panic!("no {name} header"))
}

/// The headers every dashboard answer carries, and a policy that allows no inline code,
/// no other origin, and no framing.
fn assert_served_safely(path: &str, answer: &Answer, content_type: &str) {
    assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    assert!(!answer.text.is_empty(), "{path} is empty");
    let headers = &answer.headers;
    assert_eq!(header(headers, CONTENT_TYPE.as_str()), content_type, "{path}");
    assert_eq!(header(headers, CACHE_CONTROL.as_str()), "no-cache", "{path}");
    assert_eq!(header(headers, "x-content-type-options"), "nosniff", "{path}");
    assert_eq!(header(headers, "x-frame-options"), "DENY", "{path}");
    assert_eq!(header(headers, "referrer-policy"), "no-referrer", "{path}");
    let policy = header(headers, "content-security-policy");
    let directives: BTreeSet<&str> = policy.split(';').map(str::trim).collect();
    for wanted in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(directives.contains(wanted), "{path}: the policy {policy:?} lacks {wanted:?}");
    }
    for loose in ["unsafe-inline", "unsafe-eval", "*", "http:", "https:", "data:"] {
        assert!(!policy.contains(loose), "{path}: the policy {policy:?} allows {loose}");
    }
}

/// The values of `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!(" {attribute}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| html[at + needle.len()..].split('"').next().expect("a closed attribute"))
        .collect()
}

#[tokio::test]
async fn the_page_and_its_script_and_style_sheet_are_served_with_strict_headers() {
    let server = TestServer::start().await;
    let page = fetch(&server, "/dashboard").await;
    assert_served_safely("/dashboard", &page, "text/html; charset=utf-8");
    let html = &page.text;
    assert!(html.starts_with("<!doctype html>"), "{html:.100}");

    // The policy forbids inline code, so the page must hold none: every script has a
    // source, no style element or attribute, no event handler attribute.
    for tag in html.split("<script").skip(1) {
        let tag = tag.split('>').next().unwrap();
        assert!(tag.contains(" src=\""), "an inline script: <script{tag}>");
    }
    assert!(!html.contains("<style") && !html.contains(" style=\""), "inline style in the page");
    let handlers: Vec<&str> = html
        .split_whitespace()
        .filter(|word| {
            word.split_once('=').is_some_and(|(name, _)| {
                name.len() > 2 && name.starts_with("on") && name.bytes().all(|b| b.is_ascii_lowercase())
            })
        })
        .collect();
    assert!(handlers.is_empty(), "inline event handlers: {handlers:?}");

    let assets: BTreeSet<&str> = attribute_values(html, "src")
        .into_iter()
        .chain(attribute_values(html, "href"))
        .filter(|target| target.starts_with("/dashboard/"))
        .collect();
    assert_eq!(assets, BTreeSet::from(["/dashboard/app.css", "/dashboard/app.js", "/dashboard/icon.svg"]));
    for asset in assets {
        let content_type = match asset.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => "image/svg+xml",
        };
        let answer = fetch(&server, asset).await;
        assert_served_safely(asset, &answer, content_type);
        // An SVG names its XML namespace with a URL; it loads nothing from there.
        let loaded = answer.text.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
        assert!(!loaded.contains("http://") && !loaded.contains("https://"), "{asset} loads from elsewhere");
    }
    for link in attribute_values(html, "src").into_iter().chain(attribute_values(html, "href")) {
        assert!(
            (link.starts_with('/') && !link.starts_with("//")) || link.starts_with('#'),
            "external link {link}"
        );
    }
    // The operator's links are there and answer.
    for link in ["/metrics", "/openapi.json"] {
        assert!(attribute_values(html, "href").contains(&link), "no link to {link}");
    }
}

#[tokio::test]
async fn the_address_with_a_slash_redirects_and_nothing_else_is_served_below_it() {
    let server = TestServer::start().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = http.get(server.url("/dashboard/")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()[LOCATION], "/dashboard");

    let (code, body) =
        split(server.http.get(server.url("/dashboard/index.html")).send().await.unwrap()).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = split(server.http.post(server.url("/dashboard")).send().await.unwrap()).await;
    assert_eq!(code, 405, "{body}");
}

/// The script's API calls, as `(method, path)` with `{}` for each `${...}` of the
/// template and without the query. The script makes every call as
/// `api('METHOD', 'path'...)` or with a template literal; a `/v2/` path anywhere else
/// fails the test, so no call escapes the check.
fn script_api_calls(script: &str) -> BTreeSet<(String, String)> {
    let mut calls = BTreeSet::new();
    let mut paths = 0;
    for chunk in script.split("api('").skip(1) {
        let (method, rest) = chunk.split_once('\'').expect("api('METHOD'");
        let rest =
            rest.strip_prefix(", ").unwrap_or_else(|| panic!("api('{method}' is not followed by a path"));
        let quote = rest.chars().next().expect("a path");
        assert!(quote == '\'' || quote == '`', "api('{method}', ...) without a literal path");
        let literal = rest[1..].split(quote).next().expect("a closed path literal");
        let path = literal.split('?').next().unwrap_or(literal);
        calls.insert((method.to_ascii_lowercase(), template(path)));
        paths += 1;
    }
    assert_eq!(
        paths,
        script.matches("/v2/").count(),
        "the script names a /v2/ path outside an api('METHOD', path) call"
    );
    calls
}

/// `${...}` and `{name}` both become `{}`.
fn template(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.replace("${", "{").chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("{}");
                }
                depth += 1;
            }
            '}' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `template` with each `{}` replaced by the next value.
fn fill(template: &str, values: &[&str]) -> String {
    let mut parts = template.split("{}");
    let mut out = parts.next().unwrap().to_string();
    for (part, value) in parts.zip(values) {
        out.push_str(value);
        out.push_str(part);
    }
    assert_eq!(template.matches("{}").count(), values.len(), "{template} takes other values");
    out
}

const LOGIN: (&str, &str) = ("post", "/v2/authentication/login");
const LIST: (&str, &str) = ("get", "/v2/operations/{}/jobs");
const READ: (&str, &str) = ("get", "/v2/operations/{}/jobs/{}");
const CANCEL: (&str, &str) = ("post", "/v2/operations/{}/jobs/{}/cancel");

fn owned((method, path): (&str, &str)) -> (String, String) {
    (method.to_string(), path.to_string())
}

#[tokio::test]
async fn every_api_call_of_the_script_is_a_documented_route() {
    let server = TestServer::start().await;
    let script = fetch(&server, "/dashboard/app.js").await.text;
    let calls = script_api_calls(&script);
    for wanted in [LOGIN, LIST, READ, CANCEL] {
        assert!(calls.contains(&owned(wanted)), "the script no longer calls {wanted:?}: {calls:?}");
    }

    let (code, document) = split(server.http.get(server.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(code, 200);
    let paths = document["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item");
            item.keys().map(move |method| (method.clone(), template(path)))
        })
        .collect();
    for call in &calls {
        assert!(
            documented.contains(call),
            "the dashboard calls {} {}, which the API does not document (renamed or removed?)",
            call.0.to_uppercase(),
            call.1
        );
    }
    assert!(!paths.keys().any(|path| path.starts_with("/dashboard")), "the page is not part of the API");
}

/// The calls made as the script makes them (its paths, its bodies), and the fields it
/// reads from the answers.
#[tokio::test]
async fn the_scripts_calls_answer_what_it_reads() {
    let server = TestServer::start().await;
    let calls = script_api_calls(SCRIPT);
    let path_of = |wanted: (&str, &'static str)| {
        assert!(calls.contains(&owned(wanted)), "the script no longer calls {wanted:?}");
        wanted.1
    };
    let http = &server.http;

    let (code, body) = split(
        http.post(server.url(path_of(LOGIN)))
            .json(&json!({"username": "admin", "password": "not it"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let (code, login) = split(
        http.post(server.url(path_of(LOGIN)))
            .json(&json!({"username": "admin", "password": server.admin_password}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{login}");
    let token = login["bearerToken"].as_str().expect("bearerToken");
    let alias = login["accountAlias"].as_str().expect("accountAlias");
    assert_eq!(alias, ROOT);
    assert!(login["userName"].is_string(), "{login}");

    let id = server.submit(token, alias, "nobody.runs").await;
    let list = fill(path_of(LIST), &[alias]);
    let (code, page) = server.get(token, &format!("{list}?status=notStarted&kind=nobody.*&limit=50")).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["items"][0]["id"], id.as_str(), "{page}");
    assert!(page["nextBefore"].is_null(), "{page}");
    for field in ["kind", "title", "status", "createdDate", "attempt", "maxAttempts", "cancelRequested"] {
        assert!(!page["items"][0][field].is_null(), "a listed job without {field}: {page}");
    }
    assert!(page["items"][0]["progress"]["percent"].is_number(), "{page}");
    let (code, page) = server.get(token, &format!("{list}?status=notStarted&limit=1&before=1")).await;
    assert_eq!((code, page["items"].as_array().map(Vec::len)), (200, Some(0)), "{page}");
    let (code, body) = server.get("not a token", &format!("{list}?limit=50")).await;
    assert_eq!(code, 401, "{body}");
    assert!(body["message"].is_string(), "{body}");

    let (code, job) = server.get(token, &fill(path_of(READ), &[alias, &id])).await;
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["history"][0]["status"], "notStarted", "{job}");

    let cancel = fill(path_of(CANCEL), &[alias, &id]);
    let (code, job) = server.post_json(token, &cancel, &json!({"reason": "from the dashboard"})).await;
    assert_eq!((code, job["status"].as_str()), (200, Some("failed")), "{job}");
    assert_eq!(job["error"], "cancelled: from the dashboard");
    let (code, body) = server.post_json(token, &cancel, &json!({})).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("already ended")), "{body}");
}

/// The script parses, checked with `node --check` where Node.js is installed; skipped
/// (and said so) where it is not, since nothing else here needs it.
#[test]
fn the_script_parses() {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|output| output.status.success()) {
        eprintln!("skipped: node is not installed, the script's syntax is not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.js");
    std::fs::write(&file, SCRIPT).unwrap();
    let output = std::process::Command::new("node").arg("--check").arg(&file).output().unwrap();
    assert!(output.status.success(), "node --check app.js: {}", String::from_utf8_lossy(&output.stderr));
}

/// The script never turns data into markup, and keeps the token out of lasting storage.
#[test]
fn the_script_writes_text_only_and_keeps_the_token_for_the_tab() {
    for forbidden in
        ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "localStorage", "eval("]
    {
        assert!(!SCRIPT.contains(forbidden), "app.js uses {forbidden}");
    }
    assert!(SCRIPT.contains("sessionStorage.setItem"), "app.js no longer keeps the token in sessionStorage");
}

#[test]
fn the_call_extraction_reads_templates_and_plain_paths() {
    let script = "await api('GET', `/v2/a/${enc(x)}/b?${q}`); api('POST', '/v2/c', {});";
    let calls = script_api_calls(script);
    assert_eq!(calls, BTreeSet::from([owned(("get", "/v2/a/{}/b")), owned(("post", "/v2/c"))]));
    assert_eq!(template("/v2/operations/{alias}/jobs/{statusId}"), "/v2/operations/{}/jobs/{}");
    let hidden = std::panic::catch_unwind(|| script_api_calls("fetch('/v2/x'); api('GET', '/v2/y');"));
    assert!(hidden.is_err(), "a /v2/ path outside api(...) must fail the check");
}
