//! Who is calling: passwords, bearer tokens, the caller extractor and login throttling.

mod caller;
mod password;
mod throttle;
mod token;

pub use caller::Caller;
pub use password::{hash_password, verify_password, PasswordError};
pub use throttle::LoginThrottle;
pub use token::{TokenClaims, TokenError, TokenKeys, TOKEN_LIFETIME_SECS};
