use std::fmt;

use crate::{DomainError, Location};

/// The v2 status id, `<location lower-case>-<job number>` such as `wa1-12345`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusId {
    pub location: Location,
    pub number: i64,
}

impl StatusId {
    pub fn new(location: Location, number: i64) -> Self {
        Self { location, number }
    }

    /// Accepts any case; rejects anything that is not exactly location, hyphen, and a
    /// positive decimal number that fits in an i64.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let invalid = || DomainError::InvalidStatusId(crate::alias::truncate_for_message(raw));
        let (location, number) = raw.split_once('-').ok_or_else(invalid)?;
        let location = Location::parse(location).map_err(|_| invalid())?;
        if number.is_empty() || number.len() > 18 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let number: i64 = number.parse().map_err(|_| invalid())?;
        if number <= 0 {
            return Err(invalid());
        }
        Ok(Self { location, number })
    }
}

impl fmt::Display for StatusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.location.to_lowercase(), self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_prints_lower_case() {
        let id = StatusId::parse("WA1-12345").unwrap();
        assert_eq!(id.number, 12345);
        assert_eq!(id.to_string(), "wa1-12345");
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "wa1",
            "wa1-",
            "-12",
            "wa1-0",
            "wa1--1",
            "wa1-1x",
            "w-1",
            "wa1-+1",
            "wa1-99999999999999999999",
            "wa1-1-2",
            "wa 1-2",
        ] {
            assert!(StatusId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(StatusId::parse(&"9".repeat(3000)).is_err());
    }
}
