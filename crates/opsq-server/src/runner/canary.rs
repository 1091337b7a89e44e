//! `opsq.noop`: a built-in kind that succeeds at once with an empty result. It lets
//! an operator check the queue end to end (submit, claim, complete) and is what the
//! throughput benchmarks run, so they measure the queue and not a handler.

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::{HandlerError, JobContext, JobHandler};

pub const KIND: &str = "opsq.noop";

pub struct Noop;

impl JobHandler for Noop {
    fn run(&self, _ctx: JobContext) -> BoxFuture<'static, Result<Value, HandlerError>> {
        Box::pin(async { Ok(json!({})) })
    }
}
