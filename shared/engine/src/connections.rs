//! Connections (R-CON-1…6): saved only after a live check against KiotViet FnB, the client secret
//! sealed before it is stored, never returned.
//!
//! The use cases take the typed body and answer typed views; the service-API layer reads the
//! request and writes the answer.

use kiotviet::{Credentials, KvError};
use mapping::api::ConnectionBody;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;
use store::{Connection, Switches};

use crate::error::{EngineError, ErrorCode};
use crate::service::Service;

const MAX_HISTORY_DAYS: u32 = 365;

/// A saved connection (`PUT`): the connection, the shop's KiotViet branches, and the shop token
/// when one was made (first creation or rotation; it is never shown again).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saved {
    pub connection: ConnectionView,
    pub branches: Vec<Branch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shop_token: Option<String>,
}

/// One KiotViet branch of the shop, as listed to choose from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Branch {
    pub id: i64,
    pub name: String,
}

/// The connection as answered: every field but the secret (R-CON-4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionView {
    pub shop_id: String,
    pub account_type: String,
    pub retailer: String,
    pub client_id: String,
    pub branch_id: i64,
    pub sync: SwitchesView,
    pub keep_app_product_status: bool,
    pub invoice_history_days: u32,
    pub secret_set: bool,
    pub webhooks_active: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Why the webhooks could not be registered, when a save could not (R-SYN-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks_message: Option<String>,
}

/// The sync switches as answered (R-CON-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SwitchesView {
    pub products: bool,
    pub customers: bool,
    pub orders: bool,
}

/// A disconnected shop (`DELETE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disconnected {
    pub shop_id: String,
    pub disconnected: bool,
    pub id_maps_kept: bool,
    pub webhooks_removed: usize,
}

/// `PUT /v1/shops/{shop}/connection`; `rotate_shop_token` makes a new shop token even when the
/// shop has one.
pub async fn put(
    svc: &Service,
    shop: &str,
    body: ConnectionBody,
    rotate_shop_token: bool,
    deadline: retry::Deadline,
) -> Result<Saved, EngineError> {
    let existing = svc.store.get_connection(shop).await?;
    let rotate = rotate_shop_token;
    let plan = plan(&body, existing.as_ref())?;

    // R-CON-3: a token, the retailer name, and the branch are checked live before anything is saved.
    let secret = match (&plan.new_secret, &existing) {
        (Some(s), _) => SecretString::from(s.clone()),
        (None, Some(conn)) => svc.sealer.open(shop, &conn.sealed_secret).await?,
        (None, None) => {
            return Err(EngineError::validation(
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
    let branch_list: Vec<Branch> = branches
        .iter()
        .map(|b| Branch {
            id: b.id,
            name: b.branch_name.clone().unwrap_or_default(),
        })
        .collect();
    if !branches.iter().any(|b| b.id == plan.branch_id) {
        return Err(EngineError::new(
            ErrorCode::UnknownBranch,
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
    Ok(Saved {
        connection: ConnectionView {
            webhooks_message: hooks.message,
            ..view(&conn)
        },
        branches: branch_list,
        shop_token,
    })
}

/// `GET /v1/shops/{shop}/connection`.
pub async fn get(svc: &Service, shop: &str) -> Result<ConnectionView, EngineError> {
    let conn = svc
        .store
        .get_connection(shop)
        .await?
        .ok_or_else(|| EngineError::unknown_shop(shop))?;
    Ok(view(&conn))
}

/// `DELETE /v1/shops/{shop}/connection`: schedules stop (the dispatcher only sees connections), the
/// sealed secret is destroyed with the record, ID maps stay for a later reconnect.
pub async fn delete(svc: &Service, shop: &str) -> Result<Disconnected, EngineError> {
    let Some(conn) = svc.store.get_connection(shop).await? else {
        return Err(EngineError::unknown_shop(shop));
    };
    // R-SYN-8: best effort; a hook left behind is answered "unknown shop" and dropped.
    let webhooks_removed = crate::webhooks::registration::unregister(svc, &conn).await;
    svc.store.delete_connection(shop).await?;
    tracing::info!(shop, webhooks_removed, "connection deleted");
    Ok(Disconnected {
        shop_id: shop.to_string(),
        disconnected: true,
        id_maps_kept: true,
        webhooks_removed,
    })
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

fn plan(body: &ConnectionBody, existing: Option<&Connection>) -> Result<Plan, EngineError> {
    let account_type = body
        .account_type
        .clone()
        .or_else(|| existing.map(|c| c.account_type.clone()));
    match account_type.as_deref().map(str::trim) {
        Some("fnb") => {}
        Some(other) => {
            return Err(EngineError::new(
                ErrorCode::UnsupportedAccountType,
                format!(
                    "Account type '{other}' is not supported: this connector is for KiotViet FnB (\"Cửa hàng ăn uống\"); use account_type \"fnb\"."
                ),
            ));
        }
        None => {
            return Err(EngineError::validation(
                "account_type is required; use \"fnb\" (\"Cửa hàng ăn uống\").",
            ));
        }
    }
    // R-CON-2: KiotViet does not report whether a product is still in business, so letting the
    // app's product status follow the POS would show products wrongly.
    if body.keep_app_product_status == Some(false) {
        return Err(EngineError::new(
            ErrorCode::KeepAppProductStatusRequired,
            "keep_app_product_status must stay on for KiotViet FnB: KiotViet does not report whether a product is still in business, so following the POS status would hide or show products wrongly. Hide products by hand in Abaha.",
        ));
    }
    let text = |v: &Option<String>, old: Option<&str>, name: &str| -> Result<String, EngineError> {
        match v.as_deref().map(str::trim) {
            Some("") => Err(EngineError::validation(format!(
                "{name} must not be empty."
            ))),
            Some(s) if s.len() > 200 => Err(EngineError::validation(format!(
                "{name} is too long (200 characters at most)."
            ))),
            Some(s) => Ok(s.to_string()),
            None => old
                .map(str::to_string)
                .ok_or_else(|| EngineError::validation(format!("{name} is required."))),
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
            return Err(EngineError::validation(
                "client_secret must not be empty; omit it to keep the stored one.",
            ));
        }
        Some(s) if s.len() > 500 => {
            return Err(EngineError::validation("client_secret is too long."));
        }
        Some(s) => Some(s.trim().to_string()),
        None if existing.is_none() => {
            return Err(EngineError::validation(
                "client_secret (\"Mã bảo mật\") is required when a shop is first connected.",
            ));
        }
        None => None,
    };
    let branch_id = match body.branch_id.or(existing.map(|c| c.branch_id)) {
        Some(b) if b > 0 => b,
        Some(_) => {
            return Err(EngineError::validation(
                "branch_id must be a positive KiotViet branch id.",
            ));
        }
        None => {
            return Err(EngineError::validation(
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
            return Err(EngineError::validation(format!(
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
pub fn view(conn: &Connection) -> ConnectionView {
    ConnectionView {
        shop_id: conn.shop_id.clone(),
        account_type: conn.account_type.clone(),
        retailer: conn.retailer.clone(),
        client_id: conn.client_id.clone(),
        branch_id: conn.branch_id,
        sync: SwitchesView {
            products: conn.sync.products,
            customers: conn.sync.customers,
            orders: conn.sync.orders,
        },
        keep_app_product_status: conn.keep_app_product_status,
        invoice_history_days: conn.invoice_history_days,
        secret_set: true,
        webhooks_active: !conn.webhook_ids.is_empty(),
        created_at: conn.created_at.to_rfc3339(),
        updated_at: conn.updated_at.to_rfc3339(),
        webhooks_message: None,
    }
}

/// Live-check failures in words a shop owner can act on (R-CON-3).
fn check_error(e: KvError, retailer: &str) -> EngineError {
    tracing::warn!(error = %e, "connection check failed");
    match e {
        KvError::InvalidCredentials { .. } | KvError::Unauthorized => EngineError::new(ErrorCode::InvalidCredentials,
            "KiotViet FnB refused the Client ID and secret (\"Mã bảo mật\"). Copy both again from KiotViet FnB: Thiết lập cửa hàng → Thiết lập kết nối API.",
        ),
        KvError::UnknownRetailer { message } => EngineError::new(ErrorCode::UnknownRetailer,
            format!(
                "KiotViet FnB does not know the shop name '{retailer}'. Use the shop's login name (\"Tên kết nối\"), as in <name>.fnb.kiotviet.vn."
            ),
        )
        .with_details(json!({"kiotviet_message": message})),
        KvError::Rejected { message, status, .. } => EngineError::new(ErrorCode::KiotvietRejected,
            "KiotViet FnB refused the connection check. See details for KiotViet's own message.",
        )
        .with_details(json!({"kiotviet_message": message, "kiotviet_status": status})),
        _ => EngineError::kiotviet_unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
