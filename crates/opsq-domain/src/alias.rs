use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

fn is_short_alnum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An account alias such as `ALTD`: case-insensitive on the wire, stored upper-case so
/// that equality and map keys need no further normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountAlias(String);

impl AccountAlias {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if is_short_alnum(raw, 2, 10) {
            Ok(Self(raw.to_ascii_uppercase()))
        } else {
            Err(DomainError::InvalidAlias(truncate_for_message(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-case form the real API puts in status hrefs.
    pub fn to_lowercase(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A data-center code such as `WA1`; upper-case when stored, lower-case in status ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Location(String);

impl Location {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if is_short_alnum(raw, 2, 4) {
            Ok(Self(raw.to_ascii_uppercase()))
        } else {
            Err(DomainError::InvalidLocation(truncate_for_message(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_lowercase(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// Keeps error messages short when a client sends a value of megabytes.
pub(crate) fn truncate_for_message(raw: &str) -> String {
    const MAX: usize = 64;
    if raw.len() <= MAX {
        raw.to_string()
    } else {
        let mut end = MAX;
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &raw[..end])
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.0
            }
        }
        impl std::str::FromStr for $t {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}
string_newtype_impls!(AccountAlias);
string_newtype_impls!(Location);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_upper_cased_and_bounded() {
        assert_eq!(AccountAlias::parse("altd").unwrap().as_str(), "ALTD");
        assert_eq!(AccountAlias::parse("A1").unwrap().as_str(), "A1");
        assert!(AccountAlias::parse("A").is_err());
        assert!(AccountAlias::parse("ABCDEFGHIJK").is_err());
        assert!(AccountAlias::parse("AB-C").is_err());
        assert!(AccountAlias::parse("ÄBC").is_err());
    }

    #[test]
    fn locations_are_two_to_four_alphanumerics() {
        assert_eq!(Location::parse("wa1").unwrap().to_lowercase(), "wa1");
        assert!(Location::parse("W").is_err());
        assert!(Location::parse("WA123").is_err());
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let long = "x".repeat(3000);
        let message = AccountAlias::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
    }
}
