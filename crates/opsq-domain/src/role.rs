use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The roles opsq acts on. Other CLC role names are accepted at login time elsewhere
/// but grant nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    AccountViewer,
    ServerOperator,
    ServerAdmin,
    AccountAdmin,
    Worker,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::AccountViewer, Role::ServerOperator, Role::ServerAdmin, Role::AccountAdmin, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::AccountViewer => "AccountViewer",
            Role::ServerOperator => "ServerOperator",
            Role::ServerAdmin => "ServerAdmin",
            Role::AccountAdmin => "AccountAdmin",
            Role::Worker => "Worker",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(raw))
            .ok_or_else(|| DomainError::UnknownRole(raw.chars().take(64).collect()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's set of roles, with the permission questions the API asks of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles(pub Vec<Role>);

impl Roles {
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, DomainError> {
        let mut roles = names.into_iter().map(Role::parse).collect::<Result<Vec<_>, _>>()?;
        roles.sort();
        roles.dedup();
        Ok(Self(roles))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|r| r.as_str()).collect()
    }

    /// Every role lets a user see statuses in its subtree; a worker must see the jobs it runs.
    pub fn can_read(&self) -> bool {
        !self.0.is_empty()
    }

    pub fn can_submit(&self) -> bool {
        self.0.iter().any(|r| matches!(r, Role::ServerOperator | Role::ServerAdmin | Role::AccountAdmin))
    }

    pub fn can_work(&self) -> bool {
        self.0.contains(&Role::Worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_reads_but_does_not_submit() {
        let viewer = Roles::parse_list(["accountviewer"]).unwrap();
        assert!(viewer.can_read());
        assert!(!viewer.can_submit());
        let admin = Roles::parse_list(["AccountAdmin", "AccountAdmin"]).unwrap();
        assert_eq!(admin.0.len(), 1);
        assert!(admin.can_submit());
        assert!(Roles::parse_list(["Root"]).is_err());
    }
}
