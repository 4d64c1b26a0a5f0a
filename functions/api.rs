//! Lambda: the service API behind API Gateway (HTTP API). All logic is in `service-api` (the
//! router, the same one the local stack serves) and `engine`; the stage or base path API Gateway
//! adds is taken off in `functions::route_path`.

use lambda_http::{Error, run};

#[tokio::main]
async fn main() -> Result<(), Error> {
    engine::telemetry::init_json();
    // Built once per container; the router holds it (a `Service` is cheap to clone).
    let svc = engine::Service::from_env().await.map_err(Error::from)?;
    run(functions::api_router(svc)).await
}
