//! Lambda: pulls completed invoices from KiotViet FnB into Abaha, one SQS job at a time,
//! reporting only the failed records of a batch. All logic is in `engine::jobs`.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    engine::telemetry::init_json();
    let svc = engine::Service::from_env().await.map_err(Error::from)?;
    // Built once per container; every invocation borrows it.
    let svc = &svc;
    run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        let deadline = engine::jobs::deadline_from_epoch_ms(ev.context.deadline);
        let records = ev
            .payload
            .records
            .into_iter()
            .filter_map(|r| Some((r.message_id?, r.body.unwrap_or_default())))
            .collect();
        let failed = engine::jobs::handle_batch(svc, records, deadline).await;
        let mut resp = SqsBatchResponse::default();
        resp.batch_item_failures = failed
            .into_iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
            .collect();
        Ok::<_, Error>(resp)
    }))
    .await
}
