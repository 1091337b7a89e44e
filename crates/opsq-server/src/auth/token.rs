//! Bearer tokens: HS256 JWTs with the claim names the real CLC API issued, valid for
//! 14 days, signed with a key kept in the store so every node accepts every node's
//! tokens.

use std::collections::HashMap;
use std::sync::RwLock;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const TOKEN_LIFETIME_SECS: i64 = 14 * 24 * 60 * 60;
const ISSUER: &str = "urn:api-tier3";
const AUDIENCE: &str = "urn:tier3-users";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub aud: String,
    pub nbf: i64,
    pub exp: i64,
    pub role: Vec<String>,
    pub unique_name: String,
    #[serde(rename = "urn:tier3:account-alias")]
    pub account_alias: String,
    #[serde(rename = "urn:tier3:location-alias")]
    pub location_alias: String,
}

#[derive(Debug, Error)]
pub enum TokenError {
    #[error("the bearer token is invalid, expired or was not issued by this service")]
    Invalid,
    #[error("could not sign a token: {0}")]
    Signing(String),
}

/// The signing and verification keys derived from the shared secret, and a cache
/// of tokens already verified (clients send the same token for two weeks, and a
/// signature check is a measurable part of a status read).
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: RwLock<HashMap<String, TokenClaims>>,
}

/// Most verified tokens remembered; the cache is emptied when it fills up.
const VERIFIED_CACHE_SIZE: usize = 10_000;

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: RwLock::new(HashMap::new()),
        }
    }

    pub fn issue(
        &self,
        username: &str,
        account_alias: &str,
        location_alias: &str,
        roles: Vec<String>,
        now_secs: i64,
    ) -> Result<String, TokenError> {
        let claims = TokenClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            nbf: now_secs,
            exp: now_secs + TOKEN_LIFETIME_SECS,
            role: roles,
            unique_name: username.into(),
            account_alias: account_alias.into(),
            location_alias: location_alias.into(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        encode(&header, &claims, &self.encoding).map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Accepts only HS256 tokens signed with this key, within their validity window.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        if token.len() > 8192 {
            return Err(TokenError::Invalid);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if let Some(claims) = self.verified.read().unwrap_or_else(|p| p.into_inner()).get(token) {
            // Same leeway as the full check; a cached token still expires on time.
            if claims.exp + (self.validation.leeway as i64) >= now {
                return Ok(claims.clone());
            }
        }
        let claims = decode::<TokenClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)?;
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE_SIZE {
            verified.clear();
        }
        verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    #[test]
    fn issued_tokens_verify_and_last_fourteen_days() {
        let keys = TokenKeys::from_secret(b"k");
        let token = keys.issue("u", "ALTD", "WA1", vec!["AccountAdmin".into()], now()).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.exp - claims.nbf, 1_209_600);
        assert_eq!(claims.account_alias, "ALTD");
    }

    #[test]
    fn foreign_expired_and_unsigned_tokens_are_refused() {
        let keys = TokenKeys::from_secret(b"k");
        let other = TokenKeys::from_secret(b"other");
        let foreign = other.issue("u", "A1", "WA1", vec![], now()).unwrap();
        assert!(keys.verify(&foreign).is_err());
        let expired = keys.issue("u", "A1", "WA1", vec![], now() - TOKEN_LIFETIME_SECS - 100).unwrap();
        assert!(keys.verify(&expired).is_err());
        assert!(keys.verify(&expired).is_err(), "a refused token is not cached");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = foreign.split('.').nth(1).unwrap();
        let none = format!("{}.{}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#), payload);
        assert!(keys.verify(&none).is_err());
    }
}
