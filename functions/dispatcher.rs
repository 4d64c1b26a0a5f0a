//! Lambda: the EventBridge schedule. Starts one incremental run per connected shop (R-SYN-7).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    engine::telemetry::init_json();
    // It only reads connections and enqueues jobs: no Abaha token, no KMS (template.yaml).
    let svc = engine::Service::from_env_without_abaha()
        .await
        .map_err(Error::from)?;
    // Any payload: the schedule's content is not used, and EventBridge Scheduler sends its own
    // default notification (not an EventBridge event) when no Input is set.
    run(service_fn(|_: LambdaEvent<serde_json::Value>| async {
        let out = engine::fan_out(&svc).await?;
        Ok::<_, Error>(serde_json::to_value(out)?)
    }))
    .await
}
