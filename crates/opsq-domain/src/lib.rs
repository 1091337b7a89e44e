//! opsq's domain: the identifiers, statuses and rules every other crate agrees on.
//!
//! Nothing here does IO, so the rules (which status may follow which, what a valid
//! alias or status id is) can be tested in isolation and shared by the store, the
//! server, the client and the CLI without dragging their dependencies along.

mod alias;
mod error;
mod job;
mod kind;
mod role;
mod status;
mod status_id;

pub use alias::{AccountAlias, Location};
pub use error::DomainError;
pub use job::{Job, JobEvent, NewJob, Progress};
pub use kind::{JobKind, ServerOperation};
pub use role::{Role, Roles};
pub use status::JobStatus;
pub use status_id::StatusId;

/// Milliseconds since the Unix epoch, the one time representation stored and compared.
pub type Millis = i64;
