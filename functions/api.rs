//! Lambda: the service API behind API Gateway (HTTP API). All logic is in `engine::api`; the
//! stage or base path API Gateway adds is taken off in `functions::route_path`.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    engine::telemetry::init_json();
    // Built once per container; the closure only borrows it, so no Arc is needed.
    let svc = engine::Service::from_env().await.map_err(Error::from)?;
    run(service_fn(|req| serve(&svc, req))).await
}

async fn serve(svc: &engine::Service, req: Request) -> Result<Response<Body>, Error> {
    let answer = engine::handle(svc, functions::api_request(&req)).await;
    functions::api_response(answer)
}
