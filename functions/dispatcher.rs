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
    let svc = &svc;
    run(service_fn(
        |ev: LambdaEvent<serde_json::Value>| async move {
            let deadline = engine::jobs::deadline_from_epoch_ms(ev.context.deadline);
            // Shops left when time runs out fail the invocation: the alarm fires and the
            // schedule's retry starts them (shops already started answer "already running").
            let out = engine::fan_out(svc, Some(deadline)).await?.finished()?;
            Ok::<_, Error>(serde_json::to_value(out)?)
        },
    ))
    .await
}
