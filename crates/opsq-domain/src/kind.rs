use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A job kind such as `server.powerOn`: dotted segments of ASCII letters, digits, `_`
/// and `-`. Kinds pick the handler, so they are kept to a shape that is safe in logs,
/// metrics labels and glob patterns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobKind(String);

impl JobKind {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok = !raw.is_empty()
            && raw.len() <= 100
            && raw.split('.').all(|segment| {
                !segment.is_empty()
                    && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(DomainError::InvalidKind(raw.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `pattern` may select kinds for a worker: a kind, optionally with the
    /// globs `*`, `?` and `[...]`. The server checks claims with this and workers
    /// check their configuration with it, so both refuse the same patterns.
    pub fn is_valid_pattern(pattern: &str) -> bool {
        !pattern.is_empty()
            && pattern.len() <= 100
            && pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-*?[]".contains(&b))
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for JobKind {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<JobKind> for String {
    fn from(value: JobKind) -> String {
        value.0
    }
}

/// The CLC v2 batch server operations; each queued server becomes one job of kind
/// `server.<operation>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerOperation {
    PowerOn,
    PowerOff,
    Pause,
    ShutDown,
    Reboot,
    Reset,
    StartMaintenance,
    StopMaintenance,
    Archive,
    CreateSnapshot,
}

impl ServerOperation {
    pub const ALL: [ServerOperation; 10] = [
        ServerOperation::PowerOn,
        ServerOperation::PowerOff,
        ServerOperation::Pause,
        ServerOperation::ShutDown,
        ServerOperation::Reboot,
        ServerOperation::Reset,
        ServerOperation::StartMaintenance,
        ServerOperation::StopMaintenance,
        ServerOperation::Archive,
        ServerOperation::CreateSnapshot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerOperation::PowerOn => "powerOn",
            ServerOperation::PowerOff => "powerOff",
            ServerOperation::Pause => "pause",
            ServerOperation::ShutDown => "shutDown",
            ServerOperation::Reboot => "reboot",
            ServerOperation::Reset => "reset",
            ServerOperation::StartMaintenance => "startMaintenance",
            ServerOperation::StopMaintenance => "stopMaintenance",
            ServerOperation::Archive => "archive",
            ServerOperation::CreateSnapshot => "createSnapshot",
        }
    }

    /// Operation names are matched case-insensitively, like the rest of the CLC URL space.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(raw))
            .ok_or_else(|| DomainError::UnknownOperation(raw.chars().take(64).collect()))
    }

    pub fn kind(self) -> JobKind {
        JobKind(format!("server.{}", self.as_str()))
    }

    /// The human title the real API shows in v1 `RequestTitle`, e.g. "Power On server WA1X".
    pub fn title(self, server: &str) -> String {
        let verb = match self {
            ServerOperation::PowerOn => "Power On",
            ServerOperation::PowerOff => "Power Off",
            ServerOperation::Pause => "Pause",
            ServerOperation::ShutDown => "Shut Down",
            ServerOperation::Reboot => "Reboot",
            ServerOperation::Reset => "Reset",
            ServerOperation::StartMaintenance => "Start Maintenance on",
            ServerOperation::StopMaintenance => "Stop Maintenance on",
            ServerOperation::Archive => "Archive",
            ServerOperation::CreateSnapshot => "Create Snapshot of",
        };
        format!("{verb} server {}", server.to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_dotted_names() {
        assert!(JobKind::parse("server.powerOn").is_ok());
        assert!(JobKind::parse("backup_run-2").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a b", "a/b", "ä"] {
            assert!(JobKind::parse(bad).is_err(), "{bad:?}");
        }
        assert!(JobKind::parse(&"a".repeat(101)).is_err());
    }

    #[test]
    fn kind_patterns_allow_globs() {
        for good in ["test.echo", "server.*", "backup.[ab]?", "*"] {
            assert!(JobKind::is_valid_pattern(good), "{good}");
        }
        for bad in ["", "a b", "x/y", &"k".repeat(101)] {
            assert!(!JobKind::is_valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn operations_parse_in_any_case() {
        assert_eq!(ServerOperation::parse("POWERON").unwrap(), ServerOperation::PowerOn);
        assert_eq!(ServerOperation::CreateSnapshot.kind().as_str(), "server.createSnapshot");
        assert!(ServerOperation::parse("explode").is_err());
        assert_eq!(ServerOperation::PowerOn.title("wa1x01"), "Power On server WA1X01");
    }
}
