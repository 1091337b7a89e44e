//! The path parameters the routes share, described once. The handlers read them
//! with `routes::ApiPath` as plain strings and check them themselves, so these types
//! are never built: they only name and explain the parameters in the document.

use utoipa::IntoParams;

/// `{alias}`: the account a call acts on.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AliasPath {
    /// An account alias, in any case: the caller's account or one below it (anything
    /// else is 403).
    pub alias: String,
}

/// `{alias}` and `{statusId}`: one job of an account's subtree.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// An account alias, in any case: the caller's account or one below it (anything
    /// else is 403).
    pub alias: String,
    /// The job's status id, `<location>-<number>` in any case, e.g. `wa1-12345`.
    #[param(rename = "statusId")]
    pub status_id: String,
}

/// `{statusId}` of the worker protocol: a job of the worker's account subtree.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkerJobPath {
    /// The job's status id, `<location>-<number>` in any case, e.g. `wa1-12345`.
    #[param(rename = "statusId")]
    pub status_id: String,
}
