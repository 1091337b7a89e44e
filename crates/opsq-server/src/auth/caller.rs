//! The authenticated caller of a v2 request, from its bearer token.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use opsq_domain::{AccountAlias, Location, Roles};

use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling, as their token says. Roles come from the token (like the real API),
/// so a status read costs no user lookup.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub account: AccountAlias,
    pub location: Location,
    pub roles: Roles,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("Authorization has been denied for this request: no bearer token was sent (log in at /v2/authentication/login)".into()))?;
        let value = header.to_str().map_err(|_| {
            ApiError::Unauthorized(
                "Authorization has been denied for this request: the Authorization header is not valid text"
                    .into(),
            )
        })?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "Authorization has been denied for this request: use 'Authorization: Bearer <token>'"
                        .into(),
                )
            })?;
        let claims = state.tokens.verify(token).map_err(|e| {
            ApiError::Unauthorized(format!("Authorization has been denied for this request: {e}"))
        })?;
        let invalid = || {
            ApiError::Unauthorized(
                "Authorization has been denied for this request: the token's claims are invalid".into(),
            )
        };
        Ok(Caller {
            username: claims.unique_name,
            account: AccountAlias::parse(&claims.account_alias).map_err(|_| invalid())?,
            location: Location::parse(&claims.location_alias).map_err(|_| invalid())?,
            roles: Roles::parse_list(claims.role.iter().map(String::as_str)).unwrap_or_default(),
        })
    }
}
