use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The six v2 statuses, with the meaning PRODUCT.md §2 gives them.
///
/// `Resumed` and `Unknown` are transient: every job ends `Succeeded` or `Failed`,
/// because several real clients poll forever on anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    NotStarted,
    Executing,
    Resumed,
    Unknown,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::NotStarted,
        JobStatus::Executing,
        JobStatus::Resumed,
        JobStatus::Unknown,
        JobStatus::Succeeded,
        JobStatus::Failed,
    ];

    /// The v2 wire name, also the stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::NotStarted => "notStarted",
            JobStatus::Executing => "executing",
            JobStatus::Resumed => "resumed",
            JobStatus::Unknown => "unknown",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    /// The v1 `CurrentStatus` vocabulary; `unknown` shows as `Executing` there because
    /// v1 has no word for it and its clients treat only Succeeded/Failed as terminal.
    pub fn v1_name(self) -> &'static str {
        match self {
            JobStatus::NotStarted => "Not Started",
            JobStatus::Executing | JobStatus::Unknown => "Executing",
            JobStatus::Resumed => "Resumed",
            JobStatus::Succeeded => "Succeeded",
            JobStatus::Failed => "Failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(raw))
            .ok_or_else(|| DomainError::UnknownStatus(raw.chars().take(64).collect()))
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }

    /// Whether a job in this status waits for a worker to claim it.
    pub fn is_claimable(self) -> bool {
        matches!(self, JobStatus::NotStarted | JobStatus::Resumed)
    }

    /// The state machine of PRODUCT.md §2. Terminal statuses never move, which is what
    /// keeps a late write from an old attempt from rewriting history.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match self {
            NotStarted => matches!(next, Executing | Failed),
            Executing => matches!(next, Succeeded | Failed | Resumed | Unknown),
            Resumed => matches!(next, Executing | Succeeded | Failed | Unknown),
            Unknown => matches!(next, Succeeded | Failed | Resumed),
            Succeeded | Failed => false,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    #[test]
    fn terminal_statuses_never_move() {
        for from in [Succeeded, Failed] {
            for to in JobStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn every_non_terminal_status_can_reach_an_end() {
        for from in JobStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(from.can_become(Failed), "{from} must be able to fail");
        }
    }

    #[test]
    fn table_of_product_section_two() {
        assert!(NotStarted.can_become(Executing));
        assert!(!NotStarted.can_become(Succeeded));
        assert!(!NotStarted.can_become(Resumed));
        assert!(Executing.can_become(Unknown));
        assert!(!Executing.can_become(NotStarted));
        assert!(Resumed.can_become(Executing));
        assert!(Unknown.can_become(Resumed));
        assert!(!Unknown.can_become(Executing));
    }

    #[test]
    fn names_round_trip_in_any_case() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(&s.as_str().to_uppercase()).unwrap(), s);
        }
        assert_eq!(NotStarted.v1_name(), "Not Started");
        assert_eq!(Unknown.v1_name(), "Executing");
        assert!(JobStatus::parse("running").is_err());
    }
}
