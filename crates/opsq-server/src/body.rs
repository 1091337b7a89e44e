//! Reading request bodies the way real CLC clients send them: JSON, or form-encoded
//! (PowerShell hashtables, the Python SDK's dicts), with any `Content-Type` casing.

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::MAX_BODY_BYTES;

/// A request body read up to [`MAX_BODY_BYTES`], with the request's content type.
pub struct RawBody {
    pub content_type: String,
    pub bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let declared_too_big = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > MAX_BODY_BYTES as u64);
        if declared_too_big {
            return Err(ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES });
        }
        let bytes = to_bytes(req.into_body(), MAX_BODY_BYTES).await.map_err(|err| {
            if is_length_limit(&err) {
                ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES }
            } else {
                ApiError::BadRequest(format!("the request body could not be read: {err}"))
            }
        })?;
        Ok(Self { content_type, bytes })
    }
}

/// Whether reading failed because the body passed the limit (axum wraps
/// http-body-util's `LengthLimitError`, which is only visible through the chain).
pub(crate) fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if e.to_string().contains("length limit exceeded") {
            return true;
        }
        source = e.source();
    }
    false
}

impl RawBody {
    /// Parses a JSON body into `T`; an empty body counts as `{}`, so the answer names
    /// the missing field rather than complaining about the end of input.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, ApiError> {
        let bytes: &[u8] = if self.bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &self.bytes };
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("invalid {what}: {e}")))
    }

    pub fn is_form(&self) -> bool {
        self.content_type.starts_with("application/x-www-form-urlencoded")
    }

    /// Parses the body as JSON, or as a form whose repeated keys become arrays.
    /// Bodies without a content type are sniffed: JSON if they parse as JSON.
    pub fn to_value(&self) -> Result<Value, ApiError> {
        if self.is_form() {
            return Ok(form_to_value(&self.bytes));
        }
        let declared_json = self.content_type.contains("json");
        match serde_json::from_slice::<Value>(&self.bytes) {
            Ok(value) => Ok(value),
            Err(err) if declared_json || self.content_type.is_empty() => {
                if !declared_json && self.bytes.contains(&b'=') {
                    return Ok(form_to_value(&self.bytes));
                }
                Err(ApiError::BadRequest(format!("the request body is not valid JSON: {err}")))
            }
            Err(_) => Err(ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Type {:?}: send application/json or application/x-www-form-urlencoded",
                self.content_type.chars().take(64).collect::<String>()
            ))),
        }
    }
}

fn form_to_value(bytes: &[u8]) -> Value {
    let mut map = Map::new();
    for (key, value) in form_urlencoded_pairs(bytes) {
        match map.get_mut(&key) {
            Some(Value::Array(items)) => items.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None => {
                map.insert(key, Value::String(value));
            }
        }
    }
    Value::Object(map)
}

fn form_urlencoded_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

/// Looks a field up ignoring the case of its name, as the real API did.
pub fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(content_type: &str, text: &str) -> RawBody {
        RawBody { content_type: content_type.to_ascii_lowercase(), bytes: Bytes::from(text.to_string()) }
    }

    #[test]
    fn forms_and_json_parse_with_case_insensitive_fields() {
        let form =
            body("application/x-www-form-urlencoded", "Username=a%40b&Password=p&serverIds=X&serverIds=Y");
        let value = form.to_value().unwrap();
        assert_eq!(field(&value, "username").unwrap(), "a@b");
        assert_eq!(field(&value, "SERVERIDS").unwrap(), &serde_json::json!(["X", "Y"]));
        let json = body("Application/json", r#"{"UserName":"u"}"#);
        assert_eq!(field(&json.to_value().unwrap(), "username").unwrap(), "u");
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert!(matches!(body("application/json", "{nope").to_value(), Err(ApiError::BadRequest(_))));
        assert!(matches!(body("text/plain", "{nope").to_value(), Err(ApiError::UnsupportedMediaType(_))));
    }
}
