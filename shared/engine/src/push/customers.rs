//! Customers Abaha → KiotViet FnB (R-CUS-2, R-CUS-3): matched by the ID map, then by phone, and
//! created only when absent. The link stores a fingerprint of what both sides hold, so a push that
//! only echoes what the pull wrote (or a pull right after a push) changes nothing.

use kiotviet::{KiotVietClient, KvError};
use mapping::abaha::CustomerItem;
use mapping::api::AbahaCustomer;
use mapping::customers::normalize_phone;
use mapping::hash::content_hash;
use mapping::kiotviet::Customer;
use serde_json::{Value, json};
use store::{Connection, IdKind, IdLink};

use crate::api::{ApiResponse, parse_body};
use crate::error::ApiError;
use crate::service::Service;

/// What the two sides must agree on for a customer to count as unchanged. The KiotViet code and
/// ids are left out: Abaha does not hold the code, and ids are the link itself.
pub fn fingerprint(item: &CustomerItem) -> String {
    content_hash(&json!({
        "phone": normalize_phone(&item.phone),
        "name": item.name,
        "email": item.email,
        "address": item.address,
        "gender": item.gender,
        "birth_date": item.birth_date,
    }))
}

fn fingerprint_of_abaha(c: &AbahaCustomer) -> String {
    content_hash(&json!({
        "phone": normalize_phone(c.phone.as_deref().unwrap_or_default()),
        "name": c.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Khách".to_string()),
        "email": c.email,
        "address": c.address,
        "gender": c.gender,
        "birth_date": c.birth_date,
    }))
}

/// The hash a customer link stores: the pull's content hash (everything Abaha receives) and the
/// fingerprint (what both sides hold), so each direction compares what it can see.
pub fn link_hash(item: &CustomerItem) -> String {
    format!("{}.{}", content_hash(item), fingerprint(item))
}

fn link_fingerprint(hash: &str) -> Option<&str> {
    hash.split_once('.').map(|(_, fp)| fp)
}

fn fingerprint_of_kiotviet(c: &Customer) -> Option<String> {
    mapping::customers::customer_item(c).ok().map(|i| link_hash(&i))
}

/// How a customer was matched in KiotViet.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Created(Customer),
    Found(i64),
}

/// `POST /v1/shops/{shop}/customers` (R-CUS-3).
pub async fn push_from_api(svc: &Service, shop: &str, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let customer: AbahaCustomer = parse_body(body)?;
    if customer.id.trim().is_empty() {
        return Err(ApiError::validation("id (the Abaha customer id) is required."));
    }
    let phone = customer.phone.as_deref().map(normalize_phone).unwrap_or_default();
    if phone.len() < 8 {
        return Err(ApiError::validation(
            "A phone number is required: KiotViet FnB and Abaha match customers by phone.",
        ));
    }
    let conn = svc
        .store
        .get_connection(shop)
        .await?
        .ok_or_else(|| ApiError::unknown_shop(shop))?;
    if !conn.sync.customers {
        return Err(ApiError::new(
            422,
            "customers_sync_disabled",
            "Customer sync is switched off for this shop; switch it on in the connection to push customers.",
        ));
    }
    let kv = svc.kiotviet_for(&conn).await?;
    let wanted = fingerprint_of_abaha(&customer);
    let write = mapping::customers::customer_write(&customer, conn.branch_id);

    let linked = svc
        .store
        .kiotviet_for_abaha(shop, IdKind::Customer, &customer.id)
        .await?;
    if let Some(kv_id) = linked {
        let link = svc.store.get_link(shop, IdKind::Customer, kv_id).await?;
        if link.as_ref().and_then(|l| l.hash.as_deref()).and_then(link_fingerprint) == Some(wanted.as_str()) {
            // R-CUS-3: an echo of what KiotViet already holds changes nothing.
            return Ok(answer(200, kv_id, None, "unchanged"));
        }
        let updated = kv.update_customer(kv_id, &write).await.map_err(kv_error)?;
        store_link(svc, shop, &customer.id, &updated).await?;
        return Ok(answer(200, updated.id, updated.code.clone(), "updated"));
    }
    match find_or_create(svc, &conn, &kv, &customer).await? {
        Match::Created(created) => Ok(answer(201, created.id, created.code.clone(), "created")),
        Match::Found(kv_id) => {
            let updated = kv.update_customer(kv_id, &write).await.map_err(kv_error)?;
            store_link(svc, shop, &customer.id, &updated).await?;
            Ok(answer(200, updated.id, updated.code.clone(), "updated"))
        }
    }
}

/// R-CUS-2: by phone (exact, after normalising — KiotViet's search also returns partial
/// matches), else created. The link is stored either way.
pub async fn find_or_create(
    svc: &Service,
    conn: &Connection,
    kv: &KiotVietClient,
    customer: &AbahaCustomer,
) -> Result<Match, ApiError> {
    let phone = customer.phone.as_deref().map(normalize_phone).unwrap_or_default();
    let candidates = kv.find_customers_by_phone(&phone).await.map_err(kv_error)?;
    if let Some(found) = candidates
        .iter()
        .find(|c| c.contact_number.as_deref().map(normalize_phone).as_deref() == Some(phone.as_str()))
    {
        let link = IdLink {
            abaha_id: customer.id.clone(),
            hash: fingerprint_of_kiotviet(found),
        };
        svc.store
            .put_links(&conn.shop_id, IdKind::Customer, &[(found.id, link)])
            .await?;
        return Ok(Match::Found(found.id));
    }
    let write = mapping::customers::customer_write(customer, conn.branch_id);
    let created = kv.create_customer(&write).await.map_err(kv_error)?;
    store_link(svc, &conn.shop_id, &customer.id, &created).await?;
    Ok(Match::Created(created))
}

async fn store_link(svc: &Service, shop: &str, abaha_id: &str, kv: &Customer) -> Result<(), ApiError> {
    let link = IdLink {
        abaha_id: abaha_id.to_string(),
        hash: fingerprint_of_kiotviet(kv),
    };
    svc.store.put_links(shop, IdKind::Customer, &[(kv.id, link)]).await?;
    Ok(())
}

fn answer(status: u16, id: i64, code: Option<String>, what: &str) -> ApiResponse {
    ApiResponse::json(
        status,
        json!({"kiotviet_customer_id": id, "kiotviet_code": code.map(Value::String).unwrap_or(Value::Null), "status": what}),
    )
}

/// KiotViet failures of a push, in words a shop owner can act on.
pub fn kv_error(e: KvError) -> ApiError {
    tracing::warn!(error = %e, "kiotviet call failed during a push");
    match e {
        KvError::Rejected { message, status, code } => ApiError::new(
            502,
            "kiotviet_rejected",
            "KiotViet FnB refused this. Its own message is in details; fix the setting or data it names in KiotViet FnB and try again.",
        )
        .with_details(json!({"kiotviet_message": message, "kiotviet_status": status, "kiotviet_code": code})),
        KvError::InvalidCredentials { .. } | KvError::Unauthorized => ApiError::new(
            502,
            "kiotviet_rejected",
            "KiotViet FnB refused the connection's Client ID and secret. Update the connection with the values from KiotViet FnB.",
        ),
        _ => ApiError::kiotviet_unavailable(),
    }
}
