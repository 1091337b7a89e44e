//! v1 replies: the base response (`Success`, `Message`, `StatusCode`) on every reply,
//! rendered as attribute-style XML or as JSON with `\/Date(ms)\/` dates, with the
//! deprecation headers pointing to v2.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use opsq_domain::{Job, Millis};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, Event};
use quick_xml::Writer;
use serde_json::{json, Map, Value};

/// When v1 was deprecated, as RFC 9745 wants it (`@` epoch seconds): 2015-01-01.
const DEPRECATED_SINCE: &str = "@1420070400";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// A v1 failure: its `StatusCode` and `Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Error {
    pub code: u32,
    pub message: String,
    retry_after_secs: Option<u64>,
    /// 200, as for every API-level outcome, except where HTTP itself failed (a body
    /// over the limit), which proxies and clients expect to see in the status line.
    http: StatusCode,
}

impl V1Error {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_secs: None, http: StatusCode::OK }
    }
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(2, message)
    }
    pub fn format(message: String) -> Self {
        Self::new(3, format!("Invalid request format: {message}"))
    }
    /// HTTP 413, with the v1 body (StatusCode 3) for clients that read only that.
    pub fn too_large() -> Self {
        Self {
            http: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::new(
                3,
                format!(
                    "Invalid request format: the request body is larger than {} bytes",
                    crate::state::MAX_BODY_BYTES
                ),
            )
        }
    }
    pub fn not_logged_on() -> Self {
        Self::new(100, "You must logon to the API prior to calling this method")
    }
    pub fn bad_credentials() -> Self {
        Self::new(100, "Authentication failed: the APIKey or Password is not valid")
    }
    pub fn throttled(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                100,
                format!("Authentication failed: too many failed attempts; try again in {retry_after_secs} seconds"),
            )
        }
    }
    pub fn access_denied() -> Self {
        Self::new(101, "Access Denied - Your API user account does not have access to the account specified")
    }
    pub fn unknown_method(what: &str) -> Self {
        let shown: String = what.chars().take(80).collect();
        Self::new(3, format!("Unknown API method {shown:?}: this server offers Auth/Logon, Auth/Logout, Queue/GetRequestStatus and Queue/ListQueueRequests"))
    }
    pub fn is_unknown_method(&self) -> bool {
        self.code == 3 && self.message.starts_with("Unknown API method")
    }
}

impl From<opsq_store::StoreError> for V1Error {
    fn from(err: opsq_store::StoreError) -> Self {
        tracing::warn!(error = %err, "store failure in a v1 call");
        V1Error::unknown("The job store is unavailable; retry shortly")
    }
}

/// One v1 request's details row (`RequestDetails` or a `QueueItem`).
pub struct QueueItem {
    request_id: i64,
    title: String,
    progress_desc: String,
    status_date: Millis,
    percent: u8,
    current_status: &'static str,
    step_number: u32,
}

impl QueueItem {
    pub fn of(job: &Job) -> Self {
        Self {
            request_id: job.number,
            title: job.title.clone(),
            progress_desc: job.progress.description.clone(),
            status_date: job.status_at,
            percent: job.progress.percent,
            current_status: job.status.v1_name(),
            step_number: job.progress.step_number,
        }
    }

    fn fields(&self, date: String) -> [(&'static str, Value); 7] {
        [
            ("RequestID", json!(self.request_id)),
            ("RequestTitle", json!(self.title)),
            ("ProgressDesc", json!(self.progress_desc)),
            ("StatusDate", json!(date)),
            ("PercentComplete", json!(self.percent)),
            ("CurrentStatus", json!(self.current_status)),
            ("StepNumber", json!(self.step_number)),
        ]
    }
}

pub enum Body {
    None,
    Details(QueueItem),
    List(Vec<QueueItem>),
}

pub struct Reply {
    root: &'static str,
    success: bool,
    message: String,
    code: u32,
    body: Body,
    http: StatusCode,
    set_cookie: Option<String>,
    successor: String,
    retry_after_secs: Option<u64>,
}

/// The root element of each method's reply, as the real API named them.
pub fn root_element(area: &str, method: &str) -> &'static str {
    match (area, method) {
        ("auth", "logon") => "LogonResponse",
        ("auth", "logout") => "LogoutResponse",
        ("queue", "getrequeststatus") => "QueueStatusResponse",
        ("queue", "listqueuerequests") => "ListQueueItemsResponse",
        _ => "Response",
    }
}

impl Reply {
    pub fn ok(root: &'static str, message: impl Into<String>, body: Body) -> Self {
        Self {
            root,
            success: true,
            message: message.into(),
            code: 0,
            body,
            http: StatusCode::OK,
            set_cookie: None,
            successor: "/v2/authentication/login".into(),
            retry_after_secs: None,
        }
    }

    pub fn error(root: &'static str, error: V1Error) -> Self {
        Self {
            success: false,
            code: error.code,
            retry_after_secs: error.retry_after_secs,
            http: error.http,
            ..Self::ok(root, error.message, Body::None)
        }
    }

    pub fn not_found(mut self) -> Self {
        self.http = StatusCode::NOT_FOUND;
        self
    }

    pub fn with_cookie(mut self, cookie: String) -> Self {
        self.set_cookie = Some(cookie);
        self
    }

    /// The v2 URL that replaces this call, for the `Link` header.
    pub fn with_successor(mut self, path: String) -> Self {
        self.successor = path;
        self
    }

    pub fn render(self, format: Format) -> Response {
        let (content_type, text) = match format {
            Format::Json => ("application/json; charset=utf-8", self.json()),
            Format::Xml => ("text/xml; charset=utf-8", self.xml()),
        };
        let mut response = (self.http, text).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(HeaderName::from_static("deprecation"), HeaderValue::from_static(DEPRECATED_SINCE));
        if let Ok(link) = HeaderValue::from_str(&format!("<{}>; rel=\"successor-version\"", self.successor)) {
            headers.insert(header::LINK, link);
        }
        if let Some(cookie) = self.set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::SET_COOKIE, cookie);
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    fn json(&self) -> String {
        let item = |item: &QueueItem| {
            Value::Object(
                item.fields(format!("/Date({})/", item.status_date))
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>(),
            )
        };
        let mut object = Map::new();
        match &self.body {
            Body::None => {}
            Body::Details(details) => {
                object.insert("RequestDetails".into(), item(details));
            }
            Body::List(items) => {
                object.insert("Requests".into(), Value::Array(items.iter().map(item).collect()));
            }
        }
        object.insert("Success".into(), json!(self.success));
        object.insert("Message".into(), json!(self.message));
        object.insert("StatusCode".into(), json!(self.code));
        escape_date_slashes(&Value::Object(object).to_string())
    }

    fn xml(&self) -> String {
        let mut writer = Writer::new(Vec::new());
        let code = self.code.to_string();
        let root = BytesStart::new(self.root).with_attributes([
            ("Success", if self.success { "true" } else { "false" }),
            ("Message", self.message.as_str()),
            ("StatusCode", code.as_str()),
        ]);
        let item_element = |name: &'static str, item: &QueueItem| {
            let fields = item.fields(xml_date(item.status_date));
            let values: Vec<(&str, String)> = fields
                .iter()
                .map(|(k, v)| (*k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect();
            BytesStart::new(name).with_attributes(values.iter().map(|(k, v)| (*k, v.as_str()))).into_owned()
        };
        let mut events = vec![Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None))];
        match &self.body {
            Body::None => events.push(Event::Empty(root)),
            Body::Details(details) => {
                events.push(Event::Start(root));
                events.push(Event::Empty(item_element("RequestDetails", details)));
                events.push(Event::End(BytesEnd::new(self.root)));
            }
            Body::List(items) => {
                events.push(Event::Start(root));
                events.push(Event::Start(BytesStart::new("Requests")));
                events.extend(items.iter().map(|item| Event::Empty(item_element("QueueItem", item))));
                events.push(Event::End(BytesEnd::new("Requests")));
                events.push(Event::End(BytesEnd::new(self.root)));
            }
        }
        for event in events {
            // Writing to a Vec cannot fail.
            let _ = writer.write_event(event);
        }
        String::from_utf8(writer.into_inner()).unwrap_or_default()
    }
}

/// v1 JSON dates are `"\/Date(1275097729527)\/"`, with the slashes escaped as the
/// .NET serializer wrote them; serde_json never escapes `/`, so it is done here.
fn escape_date_slashes(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    let mut rest = json;
    while let Some(start) = rest.find("\"/Date(") {
        let after = &rest[start + 7..];
        let digits = after.bytes().take_while(|b| b.is_ascii_digit() || *b == b'-').count();
        if digits > 0 && after[digits..].starts_with(")/\"") {
            out.push_str(&rest[..start]);
            out.push_str("\"\\/Date(");
            out.push_str(&after[..digits]);
            out.push_str(")\\/\"");
            rest = &after[digits + 3..];
        } else {
            out.push_str(&rest[..start + 7]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `2010-05-28T18:48:49.527`: UTC, milliseconds, no zone, as v1 XML wrote dates.
fn xml_date(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_in_both_v1_styles() {
        assert_eq!(
            escape_date_slashes(r#"{"d":"/Date(1275097729527)/","t":"/Date(x)/"}"#),
            r#"{"d":"\/Date(1275097729527)\/","t":"/Date(x)/"}"#
        );
        assert_eq!(xml_date(1_275_097_729_527), "2010-05-29T01:48:49.527");
    }

    #[test]
    fn xml_replies_are_attribute_style_and_escaped() {
        let reply = Reply::error("LogonResponse", V1Error::new(100, "bad <\"&> key"));
        let xml = reply.xml();
        assert!(
            xml.contains(
                r#"<LogonResponse Success="false" Message="bad &lt;&quot;&amp;&gt; key" StatusCode="100"/>"#
            ),
            "{xml}"
        );
    }
}
