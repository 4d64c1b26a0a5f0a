//! Lambda: pulls completed invoices from KiotViet FnB into Abaha, one SQS job at a time,
//! reporting only the failed records of a batch. All logic is in `engine::jobs`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    functions::run_pull().await
}
