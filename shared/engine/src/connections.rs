//! Connections (R-CON-1…6): saved only after a live check against KiotViet FnB, the client secret
//! sealed before it is stored, never returned.

use kiotviet::{Credentials, KvError};
use mapping::api::ConnectionBody;
use secrecy::SecretString;
use serde_json::{Value, json};
use store::{Connection, Switches};

use crate::api::{ApiRequest, ApiResponse, parse_body};
use crate::error::ApiError;
use crate::service::Service;

const MAX_HISTORY_DAYS: u32 = 365;

/// `PUT /v1/shops/{shop}/connection`.
pub async fn put(
    svc: &Service,
    shop: &str,
    req: &ApiRequest,
    deadline: retry::Deadline,
) -> Result<ApiResponse, ApiError> {
    let body: ConnectionBody = parse_body(&req.body)?;
    let existing = svc.store.get_connection(shop).await?;
    let rotate = req
        .query
        .get("rotate_shop_token")
        .is_some_and(|v| v == "true" || v == "1");
    let plan = plan(&body, existing.as_ref())?;

    // R-CON-3: a token, the retailer name, and the branch are checked live before anything is saved.
    let secret = match (&plan.new_secret, &existing) {
        (Some(s), _) => SecretString::from(s.clone()),
        (None, Some(conn)) => svc.sealer.open(shop, &conn.sealed_secret).await?,
        (None, None) => {
            return Err(ApiError::validation(
                "client_secret is required when a shop is first connected.",
            ));
        }
    };
    let kv = svc
        .kiotviet_with(Credentials {
            retailer: plan.retailer.clone(),
            client_id: plan.client_id.clone(),
            client_secret: secret.clone(),
        })
        .with_deadline(deadline.instant());
    let branches = kv
        .check_connection()
        .await
        .map_err(|e| check_error(e, &plan.retailer))?;
    let branch_list: Vec<Value> = branches
        .iter()
        .map(|b| json!({"id": b.id, "name": b.branch_name.clone().unwrap_or_default()}))
        .collect();
    if !branches.iter().any(|b| b.id == plan.branch_id) {
        return Err(ApiError::new(
            422,
            "unknown_branch",
            format!(
                "Branch {} does not exist in KiotViet shop '{}'. Choose one of the branches listed (usually the central branch).",
                plan.branch_id, plan.retailer
            ),
        )
        .with_details(json!({"branches": branch_list})));
    }

    let now = svc.now();
    let sealed_secret = match (&plan.new_secret, &existing) {
        (None, Some(conn)) => conn.sealed_secret.clone(),
        _ => svc.sealer.seal(shop, &secret).await?,
    };
    let mut shop_token = None;
    let shop_token_hash = match existing.as_ref().and_then(|c| c.shop_token_hash.clone()) {
        Some(hash) if !rotate => Some(hash),
        _ => {
            let token = store::new_token();
            let hash = store::hash_token(&token);
            shop_token = Some(token);
            Some(hash)
        }
    };
    // R-SYN-8: (re-)register the KiotViet webhooks; a failure never fails the save.
    let hooks = crate::webhooks::registration::register(svc, &kv, shop, existing.as_ref()).await;
    let conn = Connection {
        shop_id: shop.to_string(),
        account_type: "fnb".into(),
        retailer: plan.retailer,
        client_id: plan.client_id,
        sealed_secret,
        branch_id: plan.branch_id,
        sync: plan.sync,
        keep_app_product_status: true,
        invoice_history_days: plan.invoice_history_days,
        shop_token_hash,
        webhook_secret: hooks.secret.clone(),
        webhook_ids: hooks.ids.clone(),
        created_at: existing.as_ref().map(|c| c.created_at).unwrap_or(now),
        updated_at: now,
    };
    if let Err(e) = svc.store.put_connection(&conn).await {
        // Not saved: hooks registered just now would deliver with a secret nobody keeps.
        crate::webhooks::registration::remove(&kv, shop, &hooks.ids).await;
        return Err(e.into());
    }
    tracing::info!(shop, created = existing.is_none(), "connection saved");
    let mut answer = json!({"connection": view(&conn), "branches": branch_list});
    if let Some(message) = hooks.message {
        answer["connection"]["webhooks_message"] = Value::String(message);
    }
    if let Some(token) = shop_token {
        answer["shop_token"] = Value::String(token);
    }
    Ok(ApiResponse::json(200, answer))
}

/// `GET /v1/shops/{shop}/connection`.
pub async fn get(svc: &Service, shop: &str) -> Result<ApiResponse, ApiError> {
    let conn = svc
        .store
        .get_connection(shop)
        .await?
        .ok_or_else(|| ApiError::unknown_shop(shop))?;
    Ok(ApiResponse::json(200, json!({"connection": view(&conn)})))
}

/// `DELETE /v1/shops/{shop}/connection`: schedules stop (the dispatcher only sees connections), the
/// sealed secret is destroyed with the record, ID maps stay for a later reconnect.
pub async fn delete(svc: &Service, shop: &str) -> Result<ApiResponse, ApiError> {
    let Some(conn) = svc.store.get_connection(shop).await? else {
        return Err(ApiError::unknown_shop(shop));
    };
    // R-SYN-8: best effort; a hook left behind is answered "unknown shop" and dropped.
    let webhooks_removed = crate::webhooks::registration::unregister(svc, &conn).await;
    svc.store.delete_connection(shop).await?;
    tracing::info!(shop, webhooks_removed, "connection deleted");
    Ok(ApiResponse::json(
        200,
        json!({"shop_id": shop, "disconnected": true, "id_maps_kept": true, "webhooks_removed": webhooks_removed}),
    ))
}

/// What a PUT asks for, after the rules that need no network (R-CON-1, R-CON-2).
#[derive(Debug)]
struct Plan {
    retailer: String,
    client_id: String,
    new_secret: Option<String>,
    branch_id: i64,
    sync: Switches,
    invoice_history_days: u32,
}

fn plan(body: &ConnectionBody, existing: Option<&Connection>) -> Result<Plan, ApiError> {
    let account_type = body
        .account_type
        .clone()
        .or_else(|| existing.map(|c| c.account_type.clone()));
    match account_type.as_deref().map(str::trim) {
        Some("fnb") => {}
        Some(other) => {
            return Err(ApiError::new(
                422,
                "unsupported_account_type",
                format!(
                    "Account type '{other}' is not supported: this connector is for KiotViet FnB (\"Cửa hàng ăn uống\"); use account_type \"fnb\"."
                ),
            ));
        }
        None => {
            return Err(ApiError::validation(
                "account_type is required; use \"fnb\" (\"Cửa hàng ăn uống\").",
            ));
        }
    }
    // R-CON-2: KiotViet does not report whether a product is still in business, so letting the
    // app's product status follow the POS would show products wrongly.
    if body.keep_app_product_status == Some(false) {
        return Err(ApiError::new(
            422,
            "keep_app_product_status_required",
            "keep_app_product_status must stay on for KiotViet FnB: KiotViet does not report whether a product is still in business, so following the POS status would hide or show products wrongly. Hide products by hand in Abaha.",
        ));
    }
    let text = |v: &Option<String>, old: Option<&str>, name: &str| -> Result<String, ApiError> {
        match v.as_deref().map(str::trim) {
            Some("") => Err(ApiError::validation(format!("{name} must not be empty."))),
            Some(s) if s.len() > 200 => Err(ApiError::validation(format!(
                "{name} is too long (200 characters at most)."
            ))),
            Some(s) => Ok(s.to_string()),
            None => old
                .map(str::to_string)
                .ok_or_else(|| ApiError::validation(format!("{name} is required."))),
        }
    };
    let retailer = text(
        &body.retailer,
        existing.map(|c| c.retailer.as_str()),
        "retailer",
    )?;
    let client_id = text(
        &body.client_id,
        existing.map(|c| c.client_id.as_str()),
        "client_id",
    )?;
    let new_secret = match body.client_secret.as_deref() {
        Some(s) if s.trim().is_empty() => {
            return Err(ApiError::validation(
                "client_secret must not be empty; omit it to keep the stored one.",
            ));
        }
        Some(s) if s.len() > 500 => return Err(ApiError::validation("client_secret is too long.")),
        Some(s) => Some(s.trim().to_string()),
        None if existing.is_none() => {
            return Err(ApiError::validation(
                "client_secret (\"Mã bảo mật\") is required when a shop is first connected.",
            ));
        }
        None => None,
    };
    let branch_id = match body.branch_id.or(existing.map(|c| c.branch_id)) {
        Some(b) if b > 0 => b,
        Some(_) => {
            return Err(ApiError::validation(
                "branch_id must be a positive KiotViet branch id.",
            ));
        }
        None => {
            return Err(ApiError::validation(
                "branch_id (the central branch) is required.",
            ));
        }
    };
    let sync = match &body.sync {
        Some(s) => Switches {
            products: s.products,
            customers: s.customers,
            orders: s.orders,
        },
        None => existing.map(|c| c.sync).unwrap_or(Switches {
            products: true,
            customers: true,
            orders: true,
        }),
    };
    let invoice_history_days = match body.invoice_history_days {
        Some(d) if (1..=MAX_HISTORY_DAYS).contains(&d) => d,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "invoice_history_days must be between 1 and {MAX_HISTORY_DAYS}."
            )));
        }
        None => existing.map(|c| c.invoice_history_days).unwrap_or(30),
    };
    Ok(Plan {
        retailer,
        client_id,
        new_secret,
        branch_id,
        sync,
        invoice_history_days,
    })
}

/// The connection as answered: every field but the secret (R-CON-4).
pub fn view(conn: &Connection) -> Value {
    json!({
        "shop_id": conn.shop_id,
        "account_type": conn.account_type,
        "retailer": conn.retailer,
        "client_id": conn.client_id,
        "branch_id": conn.branch_id,
        "sync": {"products": conn.sync.products, "customers": conn.sync.customers, "orders": conn.sync.orders},
        "keep_app_product_status": conn.keep_app_product_status,
        "invoice_history_days": conn.invoice_history_days,
        "secret_set": true,
        "webhooks_active": !conn.webhook_ids.is_empty(),
        "created_at": conn.created_at.to_rfc3339(),
        "updated_at": conn.updated_at.to_rfc3339(),
    })
}

/// Live-check failures in words a shop owner can act on (R-CON-3).
fn check_error(e: KvError, retailer: &str) -> ApiError {
    tracing::warn!(error = %e, "connection check failed");
    match e {
        KvError::InvalidCredentials { .. } | KvError::Unauthorized => ApiError::new(
            422,
            "invalid_credentials",
            "KiotViet FnB refused the Client ID and secret (\"Mã bảo mật\"). Copy both again from KiotViet FnB: Thiết lập cửa hàng → Thiết lập kết nối API.",
        ),
        KvError::UnknownRetailer { message } => ApiError::new(
            422,
            "unknown_retailer",
            format!(
                "KiotViet FnB does not know the shop name '{retailer}'. Use the shop's login name (\"Tên kết nối\"), as in <name>.fnb.kiotviet.vn."
            ),
        )
        .with_details(json!({"kiotviet_message": message})),
        KvError::Rejected { message, status, .. } => ApiError::new(
            502,
            "kiotviet_rejected",
            "KiotViet FnB refused the connection check. See details for KiotViet's own message.",
        )
        .with_details(json!({"kiotviet_message": message, "kiotviet_status": status})),
        _ => ApiError::kiotviet_unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> ConnectionBody {
        serde_json::from_value(v).expect("valid body")
    }

    fn full() -> Value {
        json!({"account_type": "fnb", "retailer": "testfnbz15xyz", "client_id": "id", "client_secret": "s",
               "branch_id": 233443, "sync": {"products": true, "customers": false, "orders": true},
               "keep_app_product_status": true, "invoice_history_days": 30})
    }

    #[test]
    fn r_con_2_keep_app_product_status_off_is_refused_with_the_reason() {
        let mut b = full();
        b["keep_app_product_status"] = json!(false);
        let e = plan(&body(b), None).unwrap_err();
        assert_eq!(e.code, "keep_app_product_status_required");
        assert!(e.message.contains("does not report"));
    }

    #[test]
    fn r_con_1_account_type_must_be_fnb() {
        let mut b = full();
        b["account_type"] = json!("retail");
        assert_eq!(
            plan(&body(b), None).unwrap_err().code,
            "unsupported_account_type"
        );
    }

    #[test]
    fn r_con_1_a_complete_body_is_planned_with_its_switches() {
        let p = plan(&body(full()), None).unwrap();
        assert_eq!(p.retailer, "testfnbz15xyz");
        assert!(p.sync.products && !p.sync.customers && p.sync.orders);
        assert_eq!(p.invoice_history_days, 30);
    }

    #[test]
    fn r_con_1_secret_is_required_on_create_only() {
        let mut b = full();
        b.as_object_mut().unwrap().remove("client_secret");
        assert_eq!(plan(&body(b), None).unwrap_err().code, "validation_failed");
    }

    #[test]
    fn history_days_are_bounded() {
        let mut b = full();
        b["invoice_history_days"] = json!(0);
        assert_eq!(plan(&body(b), None).unwrap_err().code, "validation_failed");
    }
}
