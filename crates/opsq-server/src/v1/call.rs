//! Reading a v1 call: its route, its reply format, its parameters and its session
//! cookie, from whatever mix of query string and body the client used.

use std::collections::HashMap;

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use serde_json::Value;

use super::reply::{Format, V1Error};
use super::{session, xml};
use crate::state::MAX_BODY_BYTES;

/// Whether a path belongs to the v1 API (`/REST/...` in any case, `//` tolerated).
pub fn is_v1_path(path: &str) -> bool {
    path.split('/').find(|s| !s.is_empty()).is_some_and(|first| first.eq_ignore_ascii_case("rest"))
}

/// The `(area, method)` of the path, lower-cased, and the reply format: the suffix
/// if there is one, else the request's content type, else its Accept header, else XML.
pub fn route_and_format(request: &Request<Body>) -> (Option<(String, String)>, Format) {
    let segments: Vec<String> =
        request.uri().path().split('/').filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase()).collect();
    let header_text = |name: header::HeaderName| {
        request.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.to_ascii_lowercase())
    };
    let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
    let accept = header_text(header::ACCEPT).unwrap_or_default();
    let negotiated = if content_type.contains("json") {
        Format::Json
    } else if content_type.contains("xml") {
        Format::Xml
    } else if accept.contains("json") && !accept.contains("xml") {
        Format::Json
    } else {
        Format::Xml
    };
    match segments.as_slice() {
        [_, area, method] => (Some((area.clone(), method.clone())), negotiated),
        [_, area, method, suffix] if suffix == "json" => (Some((area.clone(), method.clone())), Format::Json),
        [_, area, method, suffix] if suffix == "xml" => (Some((area.clone(), method.clone())), Format::Xml),
        _ => (None, negotiated),
    }
}

/// A v1 call's parameters (names lower-cased) and session cookie.
pub struct V1Call {
    params: HashMap<String, String>,
    pub cookie_token: Option<String>,
    pub client: String,
}

impl V1Call {
    pub async fn read(request: Request<Body>) -> Result<Self, V1Error> {
        let client = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let cookie_token = session::cookie_token(request.headers());
        let mut params = HashMap::new();
        if let Some(query) = request.uri().query() {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
                .map_err(|e| V1Error::format(format!("the query string is malformed: {e}")))?;
            for (name, value) in pairs {
                params.insert(name.to_ascii_lowercase(), value);
            }
        }
        let content_type = content_type(request.headers());
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(V1Error::too_large());
        }
        let body = to_bytes(request.into_body(), MAX_BODY_BYTES).await.map_err(|err| {
            if crate::body::is_length_limit(&err) {
                V1Error::too_large()
            } else {
                V1Error::format(format!("the request body could not be read: {err}"))
            }
        })?;
        for (name, value) in body_params(&content_type, &body)? {
            params.insert(name.to_ascii_lowercase(), value);
        }
        Ok(Self { params, cookie_token, client })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

/// Parameters from the body: a JSON object, an XML document whose root's children
/// are the parameters, or a form. An empty body has none.
fn body_params(content_type: &str, body: &[u8]) -> Result<Vec<(String, String)>, V1Error> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Ok(vec![]);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return serde_urlencoded::from_bytes(trimmed)
            .map_err(|e| V1Error::format(format!("the form body is malformed: {e}")));
    }
    let looks_like_xml = trimmed.first() == Some(&b'<');
    if content_type.contains("xml") || (!content_type.contains("json") && looks_like_xml) {
        return xml::parameters(trimmed);
    }
    let value: Value = serde_json::from_slice(trimmed)
        .map_err(|e| V1Error::format(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(V1Error::format("the JSON body must be an object of parameters".into()));
    };
    object
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, text)),
            Value::Number(number) => Ok((name, number.to_string())),
            Value::Bool(flag) => Ok((name, flag.to_string())),
            Value::Null => Ok((name, String::new())),
            _ => Err(V1Error::format(format!("parameter {name} must be a string or a number"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, content_type: &str) -> (Option<(String, String)>, Format) {
        let request =
            Request::builder().uri(path).header("content-type", content_type).body(Body::empty()).unwrap();
        route_and_format(&request)
    }

    #[test]
    fn routes_ignore_case_double_slashes_and_trailing_slashes() {
        let expected = Some(("auth".to_string(), "logon".to_string()));
        assert_eq!(route("/REST//Auth/logon", ""), (expected.clone(), Format::Xml));
        assert_eq!(route("/rest/auth/logon/json/", ""), (expected.clone(), Format::Json));
        assert_eq!(
            route("/REST/Auth/Logon/", "application/json; charset=utf-8"),
            (expected.clone(), Format::Json)
        );
        assert_eq!(route("/REST/Auth/Logon/XML", "application/json"), (expected, Format::Xml));
        assert_eq!(route("/REST/Auth", "").0, None);
        assert!(is_v1_path("//rest/x") && !is_v1_path("/v2/rest"));
    }

    #[test]
    fn body_parameters_come_from_json_xml_or_forms() {
        let json = body_params("application/json", br#"{"RequestID": 50, "X": "y"}"#).unwrap();
        assert!(json.contains(&("RequestID".into(), "50".into())));
        let xml =
            body_params("text/xml", b"<QueueStatusRequest><RequestID>50</RequestID></QueueStatusRequest>")
                .unwrap();
        assert_eq!(xml, vec![("RequestID".to_string(), "50".to_string())]);
        let form = body_params("application/x-www-form-urlencoded", b"APIKey=k&Password=p%26").unwrap();
        assert_eq!(form[1], ("Password".to_string(), "p&".to_string()));
        assert_eq!(body_params("application/json", b"{bad").unwrap_err().code, 3);
        assert_eq!(body_params("application/json", br#"{"a": [1]}"#).unwrap_err().code, 3);
    }
}
