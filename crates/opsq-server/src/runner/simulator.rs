//! `--simulate`: built-in handlers for every `server.*` kind, so the whole CLC flow
//! can be tried with no infrastructure. Each job walks through named steps with
//! progress, then succeeds.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use opsq_domain::ServerOperation;
use serde_json::{json, Value};

use super::{HandlerError, JobContext, JobHandler, Registry};

pub const DEFAULT_STEP: Duration = Duration::from_millis(300);

struct SimulatedOperation {
    operation: ServerOperation,
    step: Duration,
}

impl SimulatedOperation {
    fn steps(&self) -> [String; 4] {
        [
            "Validating the request".to_string(),
            "Contacting the hypervisor".to_string(),
            format!("Running {}", self.operation.as_str()),
            "Verifying the server's state".to_string(),
        ]
    }
}

impl JobHandler for SimulatedOperation {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<Value, HandlerError>> {
        let steps = self.steps();
        let step = self.step;
        let operation = self.operation;
        Box::pin(async move {
            let total = steps.len();
            for (index, description) in steps.iter().enumerate() {
                let percent = (index * 100 / total) as u8;
                ctx.progress(percent, index as u32 + 1, description).await?;
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    _ = ctx.cancelled().cancelled() => {
                        return Err(HandlerError::Fatal("cancelled".into()));
                    }
                }
            }
            Ok(json!({
                "server": ctx.job.payload.get("server").cloned().unwrap_or(Value::Null),
                "operation": operation.as_str(),
                "simulated": true,
            }))
        })
    }
}

/// Registers a simulated handler for every batch server operation.
pub fn register(registry: &mut Registry, step: Duration) {
    for operation in ServerOperation::ALL {
        registry.register(operation.kind().as_str(), Arc::new(SimulatedOperation { operation, step }));
    }
}
