//! What the five binaries share: turning Lambda events into the engine's inputs and its answers
//! back. Kept here (not in `engine` or `service-api`) because it is the only code that knows API
//! Gateway's and SQS's event shapes; the binaries stay a few lines each.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// The path the service API routes on, whatever API Gateway put in front of it.
///
/// HTTP API puts the stage into `rawPath` for a named stage (`/prod/v1/shops/…`) and the mapping
/// key for a custom domain's base path (`/sync/v1/shops/…`); the route key it matched
/// (`POST /v1/shops/{shop_id}/sync`) and the path parameters do not carry either, so the path is
/// rebuilt from them. Without a route key (`$default`, other emulators) everything before the
/// first `/v1/` is dropped.
pub fn route_path<B>(req: &lambda_http::http::Request<B>) -> String {
    if let RequestContext::ApiGatewayV2(ctx) = req.request_context()
        && let Some((_, template)) = ctx.route_key.as_deref().and_then(|k| k.split_once(' '))
        && let Some(path) = fill_route(template, &req.path_parameters())
    {
        return path;
    }
    without_prefix(req.raw_http_path()).to_string()
}

fn fill_route(
    template: &str,
    params: &lambda_http::aws_lambda_events::query_map::QueryMap,
) -> Option<String> {
    let mut out = String::new();
    for seg in template.split('/').skip(1) {
        out.push('/');
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => out.push_str(params.first(name.trim_end_matches('+'))?),
            None => out.push_str(seg),
        }
    }
    (!out.is_empty()).then_some(out)
}

fn without_prefix(raw: &str) -> &str {
    match raw.find("/v1/") {
        Some(i) => &raw[i..],
        None => raw,
    }
}

/// The service API's router as the `api` Lambda serves it: API Gateway's request, told the path
/// to route on ([`route_path`]) before the router sees it.
pub fn api_router(svc: engine::Service) -> axum::Router {
    service_api::router(svc).layer(axum::middleware::map_request(with_route_path))
}

async fn with_route_path(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = route_path(&req);
    req.extensions_mut().insert(service_api::RoutePath(path));
    req
}

/// `(message id, body)` of every record of an SQS batch.
pub fn sqs_records(event: SqsEvent) -> Vec<(String, String)> {
    event
        .records
        .into_iter()
        .filter_map(|r| Some((r.message_id?, r.body.unwrap_or_default())))
        .collect()
}

/// The partial-batch answer (`ReportBatchItemFailures`): only these messages come back.
pub fn batch_response(failed: Vec<String>) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    resp
}

/// A pull function's whole `main`: the service once per container, then one SQS batch per
/// invocation with the invocation's own deadline.
pub async fn run_pull() -> Result<(), lambda_runtime::Error> {
    use lambda_runtime::{LambdaEvent, service_fn};
    engine::telemetry::init_json();
    let svc = engine::Service::from_env()
        .await
        .map_err(lambda_runtime::Error::from)?;
    // Built once per container; every invocation borrows it.
    let svc = &svc;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        let deadline = engine::jobs::deadline_from_epoch_ms(ev.context.deadline);
        let failed = engine::jobs::handle_batch(svc, sqs_records(ev.payload), deadline).await;
        Ok::<_, lambda_runtime::Error>(batch_response(failed))
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> lambda_http::Request {
        let path = format!("{}/../infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn given_the_default_stage_then_the_route_path_is_the_raw_path() {
        let req = event("api-get-connection.json");
        assert_eq!(route_path(&req), "/v1/shops/cafe-1/connection");
    }

    #[test]
    fn given_a_named_stage_then_the_stage_is_not_part_of_the_route_path() {
        // Issue 15: `/prod/v1/…` was answered 404 on every route.
        let req = event("api-sync-named-stage.json");
        assert_eq!(req.raw_http_path(), "/prod/v1/shops/cafe-1/sync");
        assert_eq!(route_path(&req), "/v1/shops/cafe-1/sync");
        assert_eq!(req.method(), "POST");
        // A base64 body arrives decoded.
        assert_eq!(req.body().as_ref(), br#"{"full": true}"#);
    }

    #[tokio::test]
    async fn given_a_named_stage_then_the_router_is_told_the_route_path() {
        // The API Gateway request as the router receives it (its body now axum's).
        let req = event("api-sync-named-stage.json").map(axum::body::Body::new);
        let req = with_route_path(req).await;
        assert_eq!(
            req.extensions().get::<service_api::RoutePath>(),
            Some(&service_api::RoutePath("/v1/shops/cafe-1/sync".into()))
        );
    }

    #[test]
    fn given_a_custom_domain_base_path_then_the_mapping_key_is_not_part_of_the_route_path() {
        let req = event("api-run-custom-domain.json");
        assert_eq!(req.raw_http_path(), "/sync/v1/shops/cafe-1/sync/run-1");
        assert_eq!(route_path(&req), "/v1/shops/cafe-1/sync/run-1");
    }

    #[test]
    fn given_no_route_key_then_everything_before_v1_is_dropped() {
        assert_eq!(without_prefix("/prod/v1/shops/s/sync"), "/v1/shops/s/sync");
        assert_eq!(without_prefix("/v1/shops/s/sync"), "/v1/shops/s/sync");
        assert_eq!(without_prefix("/elsewhere"), "/elsewhere");
    }

    #[test]
    fn given_a_batch_answer_then_only_the_failed_ids_are_reported() {
        let resp = batch_response(vec!["m-2".into()]);
        let v = serde_json::to_value(resp).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-2"}]})
        );
    }
}
