//! Routing and authentication. Order of checks for every route: route → method → body size →
//! authentication → body → rules. So a caller without a token learns nothing about shops, and
//! nothing is written before every check has passed.

use engine::{ErrorCode, Service};

use crate::answers;
use crate::error::ApiError;
use crate::request::{ApiRequest, ApiResponse};

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// A shop token: only its own shop's order and customer push routes.
    Shop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Connection(String),
    Sync(String),
    Run(String, String),
    Orders(String),
    Customers(String),
    Webhook(String),
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["v1", "shops", shop, "connection"] => Some(Route::Connection(shop.to_string())),
        ["v1", "shops", shop, "sync"] => Some(Route::Sync(shop.to_string())),
        ["v1", "shops", shop, "sync", run] => Some(Route::Run(shop.to_string(), run.to_string())),
        ["v1", "shops", shop, "orders"] => Some(Route::Orders(shop.to_string())),
        ["v1", "shops", shop, "customers"] => Some(Route::Customers(shop.to_string())),
        ["v1", "kiotviet", "webhooks", shop] => Some(Route::Webhook(shop.to_string())),
        _ => None,
    }
}

fn allowed(route: &Route) -> &'static [&'static str] {
    match route {
        Route::Connection(_) => &["PUT", "GET", "DELETE"],
        Route::Sync(_) => &["POST", "GET"],
        Route::Run(..) => &["GET"],
        Route::Orders(_) | Route::Customers(_) | Route::Webhook(_) => &["POST"],
    }
}

/// Serves one request. Never panics on input; every failure is an answer in the error shape.
pub async fn handle(svc: &Service, req: ApiRequest) -> ApiResponse {
    let started = std::time::Instant::now();
    let method = req.method.to_ascii_uppercase();
    let path = req.path.clone();
    let deadline = svc.api_deadline();
    // The use cases end their own work by the deadline (every KiotViet call is cut there); this
    // is the backstop that answers in time whatever else was slow. Dropping the work mid-way is
    // safe: every step leaves state a retry can take over (the order push's claim outlives it).
    let backstop = svc.settings.api_deadline + std::time::Duration::from_secs(2);
    let answer = match tokio::time::timeout(backstop, dispatch(svc, &method, req, deadline)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => e.into(),
        Err(_) => ApiError::new(
            ErrorCode::ServiceUnavailable,
            "This took longer than the service may take to answer. Try again in a minute: an order or customer push then checks what the first try left (nothing is created twice); a connection is checked again from the start.",
        )
        .with_retry_after(60)
        .into(),
    };
    tracing::info!(
        method = %method,
        path = %path,
        status = answer.status,
        ms = started.elapsed().as_millis() as u64,
        "service api"
    );
    answer
}

async fn dispatch(
    svc: &Service,
    method: &str,
    req: ApiRequest,
    deadline: retry::Deadline,
) -> Result<ApiResponse, ApiError> {
    let Some(route) = route(&req.path) else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("There is no route {} {}.", method, req.path),
        ));
    };
    if !allowed(&route).contains(&method) {
        // RFC 9110: a 405 names the methods the resource does allow.
        let mut answer = ApiResponse::from(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!(
                "{} is not allowed here; use {}.",
                method,
                allowed(&route).join(" or ")
            ),
        ));
        answer
            .headers
            .push(("allow".to_string(), allowed(&route).join(", ")));
        return Ok(answer);
    }
    // KiotViet webhooks carry no bearer token: they are verified by signature (R-SYN-8), and
    // are always answered 200 (a 4xx would make KiotViet switch the hook off) — even oversized.
    if let Route::Webhook(shop) = &route {
        return Ok(answers::webhook(svc, shop, &req).await);
    }
    if req.body.len() > svc.settings.max_body_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "The request body is larger than {} bytes.",
                svc.settings.max_body_bytes
            ),
        ));
    }
    let shop = match &route {
        Route::Connection(s)
        | Route::Sync(s)
        | Route::Run(s, _)
        | Route::Orders(s)
        | Route::Customers(s) => s.clone(),
        Route::Webhook(s) => s.clone(),
    };
    validate_shop_id(&shop)?;
    let caller = authenticate(svc, &req, &shop).await?;
    let shop_routes_ok = matches!(route, Route::Orders(_) | Route::Customers(_));
    if caller == Caller::Shop && !shop_routes_ok {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "A shop token may only push orders and customers of its own shop; use the admin token.",
        ));
    }
    match (route, method) {
        (Route::Connection(shop), "PUT") => {
            answers::put_connection(svc, &shop, &req, deadline).await
        }
        (Route::Connection(shop), "GET") => answers::get_connection(svc, &shop).await,
        (Route::Connection(shop), "DELETE") => answers::delete_connection(svc, &shop).await,
        (Route::Sync(shop), "POST") => answers::start_sync(svc, &shop, &req.body).await,
        (Route::Sync(shop), "GET") => answers::latest_run(svc, &shop).await,
        (Route::Run(shop, run), "GET") => answers::one_run(svc, &shop, &run).await,
        (Route::Orders(shop), "POST") => answers::push_order(svc, &shop, &req.body, deadline).await,
        (Route::Customers(shop), "POST") => {
            answers::push_customer(svc, &shop, &req.body, deadline).await
        }
        _ => Err(ApiError::internal()),
    }
}

/// Shop ids are Abaha's; we only insist they are plain, so they are safe in keys and URLs.
fn validate_shop_id(shop: &str) -> Result<(), ApiError> {
    let ok = !shop.is_empty()
        && shop.len() <= 64
        && shop
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "A shop id is 1 to 64 letters, digits, '-', '_' or '.'.",
        ))
    }
}

/// Admin token for every route; a shop token (stored as a hash on the connection) for its shop.
async fn authenticate(svc: &Service, req: &ApiRequest, shop: &str) -> Result<Caller, ApiError> {
    let Some(token) = req
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Err(unauthorized());
    };
    if store::token_matches(&svc.admin_token_hash, token) {
        return Ok(Caller::Admin);
    }
    // A shop token is only ever valid for its own shop; any other shop's routes are forbidden.
    if let Some(conn) = svc.store.get_connection(shop).await?
        && let Some(hash) = &conn.shop_token_hash
        && store::token_matches(hash, token)
    {
        return Ok(Caller::Shop);
    }
    // Someone else's shop token (403) or no valid token at all (401): one read, however many
    // shops there are.
    if let Ok(Some(owner)) = svc.store.shop_of_token(&store::hash_token(token)).await
        && owner != shop
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "This shop token belongs to another shop.",
        ));
    }
    Err(unauthorized())
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "Send 'Authorization: Bearer <token>' with the admin token or this shop's token.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_the_contract_paths() {
        assert_eq!(
            route("/v1/shops/s1/connection"),
            Some(Route::Connection("s1".into()))
        );
        assert_eq!(route("/v1/shops/s1/sync"), Some(Route::Sync("s1".into())));
        assert_eq!(
            route("/v1/shops/s1/sync/r-1"),
            Some(Route::Run("s1".into(), "r-1".into()))
        );
        assert_eq!(
            route("/v1/shops/s1/orders"),
            Some(Route::Orders("s1".into()))
        );
        assert_eq!(
            route("/v1/shops/s1/customers"),
            Some(Route::Customers("s1".into()))
        );
        assert_eq!(
            route("/v1/kiotviet/webhooks/s1"),
            Some(Route::Webhook("s1".into()))
        );
        assert_eq!(route("/v1/shops/s1"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn shop_ids_are_plain() {
        assert!(validate_shop_id("shop-1_a.b").is_ok());
        assert!(validate_shop_id("").is_err());
        assert!(validate_shop_id("a/b").is_err());
        assert!(validate_shop_id(&"x".repeat(65)).is_err());
    }
}
