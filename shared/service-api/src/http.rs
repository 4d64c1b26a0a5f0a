//! The one router both hosts serve: the `api` Lambda runs it under `lambda_http`, the local stack
//! under `axum::serve`. It turns any request into an [`ApiRequest`] for [`handle`] and its
//! [`ApiResponse`] back into HTTP; what differs between hosts (API Gateway's stage or base path
//! in front of `/v1/…`) a host says in a [`RoutePath`] extension.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::Service;

use crate::request::{ApiRequest, ApiResponse};
use crate::routes::handle;

/// The path to route on, when the host knows it better than the request's URI (the Lambda: the
/// route API Gateway matched, without its stage or custom-domain base path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath(pub String);

/// Most bytes of a body read in full: API Gateway's own payload limit. Larger bodies are never
/// read; the router answers them as too large (or, for a webhook, drops them).
const READ_AT_MOST: usize = 10 * 1024 * 1024;

/// Every route of the service API, for `svc`.
pub fn router(svc: Service) -> axum::Router {
    axum::Router::new().fallback(serve).with_state(svc)
}

async fn serve(State(svc): State<Service>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let too_large = svc.settings.max_body_bytes + 1;
    let bytes: Bytes = match axum::body::to_bytes(body, READ_AT_MOST.max(too_large)).await {
        Ok(b) => b,
        // Not read: a body just over the service's limit, so that it answers 413 itself.
        Err(_) => Bytes::from(vec![b' '; too_large]),
    };
    let path = match parts.extensions.get::<RoutePath>() {
        Some(RoutePath(p)) => p.clone(),
        None => parts.uri.path().to_string(),
    };
    let api_req = ApiRequest {
        method: parts.method.as_str().to_string(),
        path,
        query: parts.uri.query().map(query_map).unwrap_or_default(),
        headers: headers_map(&parts.headers),
        body: bytes.to_vec(),
    };
    let answer = handle(&svc, api_req).await;
    http_response(answer, parts.method == Method::HEAD)
}

/// An answer as HTTP: JSON body (none for HEAD), the answer's headers.
fn http_response(answer: ApiResponse, head: bool) -> Response {
    let mut resp = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        if head {
            String::new()
        } else {
            answer.body.to_string()
        },
    )
        .into_response();
    for (k, v) in answer.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

/// Header names lower-case; values that are not text are left out.
fn headers_map(h: &HeaderMap) -> HashMap<String, String> {
    h.iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect()
}

/// `a=1&b=x%20y` → {a: 1, b: "x y"}; pairs that do not decode are left out.
fn query_map(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded_into_pairs() {
        let q = query_map("rotate_shop_token=true&event=product.delete&x=a%20b+c&flag");
        assert_eq!(q["rotate_shop_token"], "true");
        assert_eq!(q["event"], "product.delete");
        assert_eq!(q["x"], "a b c");
        assert_eq!(q["flag"], "");
        assert!(query_map("bad=%zz").is_empty());
    }

    #[test]
    fn answers_keep_their_status_and_headers_and_head_has_no_body() {
        let mut answer = ApiResponse::json(405, serde_json::json!({"error": {}}));
        answer.headers.push(("allow".into(), "GET, POST".into()));
        let resp = http_response(answer.clone(), false);
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "GET, POST");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let _ = http_response(answer, true);
    }
}
