//! Lambda: the service API behind API Gateway (HTTP API). All logic is in `engine::api`.

use lambda_http::{Body, Error, Request, RequestExt, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    engine::telemetry::init_json();
    // Built once per container; the closure only borrows it, so no Arc is needed.
    let svc = engine::Service::from_env().await.map_err(Error::from)?;
    run(service_fn(|req| serve(&svc, req))).await
}

async fn serve(svc: &engine::Service, req: Request) -> Result<Response<Body>, Error> {
    let query = req
        .query_string_parameters()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    let api_req = engine::ApiRequest {
        method: req.method().as_str().to_string(),
        path: req.raw_http_path().to_string(),
        query,
        headers,
        body: req.body().to_vec(),
    };
    let answer = engine::handle(svc, api_req).await;
    let mut resp = Response::builder()
        .status(answer.status)
        .header("content-type", "application/json");
    for (k, v) in &answer.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    Ok(resp.body(Body::from(answer.body.to_string()))?)
}
