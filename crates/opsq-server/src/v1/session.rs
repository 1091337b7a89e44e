//! The v1 session cookie, `Tier3.API.Cookie` (the name real clients look for). The
//! cookie holds a random secret; the store keeps only its SHA-256, with an expiry, so
//! every node sharing the store accepts it.

use axum::http::{header, HeaderMap};
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub const COOKIE_NAME: &str = "Tier3.API.Cookie";
/// How long a v1 session lasts; clients log on again when told `StatusCode` 100.
pub const SESSION_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;

/// A new random cookie secret.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// The cookie's secret from the request's `Cookie` headers, if it sent one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"').to_string())
        .filter(|value| !value.is_empty() && value.len() <= 256)
}

pub fn set_cookie(token: &str, expires_at_ms: i64) -> String {
    let expires = DateTime::<Utc>::from_timestamp_millis(expires_at_ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT");
    format!("{COOKIE_NAME}={token}; Expires={expires}; Path=/; HttpOnly; SameSite=Lax")
}

pub fn clear_cookie() -> String {
    format!(
        "{COOKIE_NAME}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; Tier3.API.Cookie=secret; b=2".parse().unwrap());
        assert_eq!(cookie_token(&headers).as_deref(), Some("secret"));
        assert!(set_cookie("x", 0).contains("HttpOnly"));
        assert_ne!(hash("a"), hash("b"));
    }
}
