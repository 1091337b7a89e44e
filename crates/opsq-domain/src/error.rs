use thiserror::Error;

/// Why a value from the outside world is not a valid domain value.
///
/// Each message is written for the person who sent the value, since most of them end
/// up verbatim in an HTTP 4xx body or a CLI error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("account alias {0:?} is invalid: use 2 to 10 ASCII letters or digits")]
    InvalidAlias(String),
    #[error("location {0:?} is invalid: use 2 to 4 ASCII letters or digits, such as WA1")]
    InvalidLocation(String),
    #[error("status id {0:?} is invalid: expected <location>-<number>, such as wa1-12345")]
    InvalidStatusId(String),
    #[error("job kind {0:?} is invalid: use dotted names of letters, digits, '_' and '-', such as server.powerOn (at most 100 characters)")]
    InvalidKind(String),
    #[error(
        "role {0:?} is unknown: use one of AccountViewer, ServerOperator, ServerAdmin, AccountAdmin, Worker"
    )]
    UnknownRole(String),
    #[error("status {0:?} is unknown")]
    UnknownStatus(String),
    #[error("operation {0:?} is unknown: use one of powerOn, powerOff, pause, shutDown, reboot, reset, startMaintenance, stopMaintenance, archive, createSnapshot")]
    UnknownOperation(String),
}
