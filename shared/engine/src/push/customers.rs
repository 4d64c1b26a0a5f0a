//! Customers Abaha → KiotViet FnB (R-CUS-2, R-CUS-3): matched by the ID map, then by phone, and
//! created only when absent. The link stores a fingerprint of what both sides hold, so a push that
//! only echoes what the pull wrote (or a pull right after a push) changes nothing.
//!
//! Matching and creating run under a short idempotency claim per Abaha customer: two pushes of
//! the same new customer at once (the customer webhook and an order webhook, say) would otherwise
//! both miss the phone search and create the customer twice in KiotViet.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use kiotviet::{KiotVietClient, KvError};
use mapping::api::AbahaCustomer;
use mapping::customers::first_phone;
use mapping::kiotviet::Customer;
use serde_json::{Value, json};
use store::{Claim, Connection, IdKind, IdLink};

use crate::error::{EngineError, ErrorCode};
pub use crate::links::{fingerprint, link_hash};
use crate::links::{fingerprint_of_abaha, link_fingerprint, link_hash_of_kiotviet};
use crate::service::Service;

/// How long one matching may hold a customer before another push may take over, when the call
/// has no deadline (on the API path: its deadline plus the settle time, like an order's claim).
const CLAIM_SECS: i64 = 30;
/// How long a push waits for another push of the same customer before answering 409.
const WAIT_STEP: Duration = Duration::from_millis(100);
const WAIT_STEPS: u32 = 30;

/// How a customer was matched in KiotViet (R-CUS-2).
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// Through the ID map: a push or a pull linked it before.
    Linked(i64),
    /// A KiotViet customer with exactly this phone; now linked.
    Found(Customer),
    /// Created in KiotViet; now linked.
    Created(Customer),
}

impl Match {
    pub fn kiotviet_id(&self) -> i64 {
        match self {
            Match::Linked(id) => *id,
            Match::Found(c) | Match::Created(c) => c.id,
        }
    }
}

/// What a customer push did (`{"kiotviet_customer_id", "kiotviet_code", "status"}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerPushed {
    pub kiotviet_customer_id: i64,
    pub kiotviet_code: Option<String>,
    pub status: CustomerOutcome,
}

/// Created in KiotViet (201 on the service API), or updated / already the same there (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerOutcome {
    Created,
    Updated,
    Unchanged,
}

/// `POST /v1/shops/{shop}/customers` (R-CUS-3).
pub async fn push_from_api(
    svc: &Service,
    shop: &str,
    mut customer: AbahaCustomer,
    deadline: retry::Deadline,
) -> Result<CustomerPushed, EngineError> {
    customer.id = crate::push::orders::plan::check_id("id", &customer.id)
        .map_err(|e| EngineError::validation(e.message).with_details(json!({"field": e.field})))?;
    let phone = customer
        .phone
        .as_deref()
        .and_then(first_phone)
        .unwrap_or_default();
    if phone.len() < 8 {
        return Err(EngineError::validation(
            "A phone number is required: KiotViet FnB and Abaha match customers by phone.",
        ));
    }
    let conn = svc
        .store
        .get_connection(shop)
        .await?
        .ok_or_else(|| EngineError::unknown_shop(shop))?;
    if !conn.sync.customers {
        return Err(EngineError::new(
            ErrorCode::CustomersSyncDisabled,
            "Customer sync is switched off for this shop; switch it on in the connection to push customers.",
        ));
    }
    let kv = svc
        .kiotviet_for(&conn)
        .await?
        .with_deadline(deadline.instant());
    let wanted = fingerprint_of_abaha(&customer);

    let kv_id = match resolve(svc, &conn, &kv, &customer).await? {
        Match::Created(created) => {
            return Ok(answer(created.id, created.code, CustomerOutcome::Created));
        }
        Match::Found(found) => {
            if link_hash_of_kiotviet(&found)
                .as_deref()
                .and_then(link_fingerprint)
                == Some(wanted.as_str())
            {
                return Ok(answer(found.id, found.code, CustomerOutcome::Unchanged));
            }
            found.id
        }
        Match::Linked(kv_id) => {
            let link = svc.store.get_link(shop, IdKind::Customer, kv_id).await?;
            if link
                .as_ref()
                .and_then(|l| l.hash.as_deref())
                .and_then(link_fingerprint)
                == Some(wanted.as_str())
            {
                // R-CUS-3: an echo of what KiotViet already holds changes nothing. The answer
                // still names the KiotViet code (CONTRACTS), which only KiotViet holds: one GET.
                let code = match kv.customer(kv_id).await {
                    Ok(c) => c.code,
                    Err(e) => {
                        tracing::warn!(shop, customer = %customer.id, error = %e, "could not read the KiotViet customer code");
                        None
                    }
                };
                return Ok(answer(kv_id, code, CustomerOutcome::Unchanged));
            }
            kv_id
        }
    };
    let write = mapping::customers::customer_write(&customer, conn.branch_id);
    let updated = kv.update_customer(kv_id, &write).await.map_err(kv_error)?;
    store_link(svc, shop, &customer.id, &updated).await?;
    Ok(answer(
        updated.id,
        updated.code.clone(),
        CustomerOutcome::Updated,
    ))
}

/// R-CUS-2: the ID map, then the phone (exact, after normalising — KiotViet's search also
/// returns partial matches), else created in KiotViet. The link is stored in every case.
pub async fn resolve(
    svc: &Service,
    conn: &Connection,
    kv: &KiotVietClient,
    customer: &AbahaCustomer,
) -> Result<Match, EngineError> {
    let shop = conn.shop_id.as_str();
    if let Some(id) = svc
        .store
        .kiotviet_for_abaha(shop, IdKind::Customer, &customer.id)
        .await?
    {
        return Ok(Match::Linked(id));
    }
    // One matching per phone at a time: a guest order ("phone:…") and the registered customer
    // with that number would otherwise both miss the search and create the customer twice.
    let key = match customer.phone.as_deref().and_then(first_phone) {
        Some(phone) => format!("customer-phone#{phone}"),
        None => format!("customer#{}", customer.id),
    };
    let holder = uuid::Uuid::new_v4().to_string();
    let mut waits = 0;
    loop {
        let now = svc.now();
        let until = match kv.deadline().time_left() {
            Some(left) => crate::push::orders::plan::claim_until(now, Some(left)),
            None => now + ChronoDuration::seconds(CLAIM_SECS),
        };
        match svc.store.claim(shop, &key, &holder, until, now).await? {
            // Never completed on purpose (the record only serialises matching), but a completed
            // record must not block either.
            Claim::Claimed { .. } | Claim::Completed(_) => break,
            Claim::InProgress { until } => {
                if waits >= WAIT_STEPS {
                    let secs = crate::push::orders::plan::seconds_until(until, now);
                    return Err(EngineError::new(ErrorCode::PushInProgress,
                        "This customer is being matched in KiotViet FnB right now. Try again in a few seconds; it will not be created twice.",
                    )
                    .with_retry_after(secs));
                }
                waits += 1;
                tokio::time::sleep(WAIT_STEP).await;
            }
        }
    }
    let matched = match_or_create(svc, conn, kv, customer).await;
    // A create that may have reached KiotViet keeps the claim until it can no longer land, so
    // the next search finds it instead of creating it again.
    let may_have_landed = matched
        .as_ref()
        .is_err_and(|e| e.details.get("may_have_reached_kiotviet") == Some(&Value::Bool(true)));
    if !may_have_landed && let Err(e) = svc.store.release(shop, &key, &holder, true).await {
        tracing::warn!(shop, customer = %customer.id, error = %e, "could not release a customer claim");
    }
    matched
}

async fn match_or_create(
    svc: &Service,
    conn: &Connection,
    kv: &KiotVietClient,
    customer: &AbahaCustomer,
) -> Result<Match, EngineError> {
    let shop = conn.shop_id.as_str();
    // Another push may have linked it between the first look and the claim.
    if let Some(id) = svc
        .store
        .kiotviet_for_abaha(shop, IdKind::Customer, &customer.id)
        .await?
    {
        return Ok(Match::Linked(id));
    }
    let phone = customer
        .phone
        .as_deref()
        .and_then(first_phone)
        .unwrap_or_default();
    for term in phone_search_terms(&phone) {
        let candidates = kv.find_customers_by_phone(&term).await.map_err(kv_error)?;
        let exact = candidates.into_iter().find(|c| {
            c.contact_number.as_deref().and_then(first_phone).as_deref() == Some(phone.as_str())
        });
        if let Some(found) = exact {
            store_link(svc, shop, &customer.id, &found).await?;
            return Ok(Match::Found(found));
        }
    }
    let write = mapping::customers::customer_write(customer, conn.branch_id);
    let created = kv.create_customer(&write).await.map_err(|e| {
        if crate::push::orders::plan::landed(&e) == crate::push::orders::plan::Landed::Maybe {
            tracing::warn!(shop, customer = %customer.id, error = %e, "customer POST may have reached KiotViet");
            return EngineError::new(ErrorCode::KiotvietUnavailable,
                "KiotViet FnB did not confirm the new customer in time; it may have been created there. Retrying is safe: the push looks for the customer by phone before creating one.",
            )
            .with_retry_after(30)
            .with_details(json!({"may_have_reached_kiotviet": true}));
        }
        kv_error(e)
    })?;
    store_link(svc, shop, &customer.id, &created).await?;
    Ok(Match::Created(created))
}

/// What to search KiotViet's `contactNumber` for, in order, before creating a customer: the
/// number itself, then its last four and last three digits. KiotViet matches the text as stored,
/// so "090 123 4567" or "0901.234.567" is not found by "0901234567"; a number's last digits stay
/// together in most spellings, and every candidate is still compared digit for digit. Two more
/// GETs, only for a customer about to be created.
fn phone_search_terms(phone: &str) -> Vec<String> {
    let mut terms = vec![phone.to_string()];
    for tail in [4, 3] {
        if phone.len() > tail {
            terms.push(phone[phone.len() - tail..].to_string());
        }
    }
    terms
}

async fn store_link(
    svc: &Service,
    shop: &str,
    abaha_id: &str,
    kv: &Customer,
) -> Result<(), EngineError> {
    let link = IdLink {
        abaha_id: abaha_id.to_string(),
        hash: link_hash_of_kiotviet(kv),
    };
    svc.store
        .put_links(shop, IdKind::Customer, &[(kv.id, link)])
        .await?;
    Ok(())
}

fn answer(id: i64, code: Option<String>, status: CustomerOutcome) -> CustomerPushed {
    CustomerPushed {
        kiotviet_customer_id: id,
        kiotviet_code: code,
        status,
    }
}

/// KiotViet failures of a push, in words a shop owner can act on.
pub fn kv_error(e: KvError) -> EngineError {
    tracing::warn!(error = %e, "kiotviet call failed during a push");
    match e {
        KvError::Rejected { message, status, code } => EngineError::new(ErrorCode::KiotvietRejected,
            "KiotViet FnB refused this. Its own message is in details; fix the setting or data it names in KiotViet FnB and try again.",
        )
        .with_details(json!({"kiotviet_message": message, "kiotviet_status": status, "kiotviet_code": code})),
        KvError::InvalidCredentials { .. } | KvError::Unauthorized => EngineError::new(ErrorCode::KiotvietRejected,
            "KiotViet FnB refused the connection's Client ID and secret. Update the connection with the values from KiotViet FnB.",
        ),
        KvError::RateLimited {
            retry_after: Some(wait),
        } => EngineError::kiotviet_unavailable().with_retry_after(wait.as_secs().max(1)),
        _ => EngineError::kiotviet_unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapping::api::AbahaCustomer;

    #[test]
    fn r_cus_2_phone_search_tries_the_number_then_its_last_four_and_three_digits() {
        assert_eq!(
            phone_search_terms("0908002345"),
            ["0908002345", "2345", "345"]
        );
        assert_eq!(phone_search_terms("123"), ["123"]);
    }

    fn kv(v: Value) -> Customer {
        serde_json::from_value(v).unwrap()
    }

    fn abaha(v: Value) -> AbahaCustomer {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn r_cus_3_an_echo_of_the_pulled_customer_has_the_same_fingerprint() {
        // GIVEN a KiotViet customer as the pull links it, and Abaha echoing it back with spaces,
        // an empty email and a differently written phone
        let c = kv(
            json!({"id": 7, "code": "KH7", "name": "Trần B", "contactNumber": "+84 912 345 678",
                          "email": null, "address": "2 Hai Bà Trưng", "gender": false}),
        );
        let echo = abaha(
            json!({"id": "cus-1", "name": " Trần B ", "phone": "0912345678", "email": "",
                                "address": "2 Hai Bà Trưng ", "gender": "female", "birth_date": null}),
        );
        // THEN both directions see the same customer
        let linked = link_hash_of_kiotviet(&c).unwrap();
        assert_eq!(
            link_fingerprint(&linked),
            Some(fingerprint_of_abaha(&echo).as_str())
        );
        // AND a real change is seen as one
        let changed = abaha(json!({"id": "cus-1", "name": "Trần Thị B", "phone": "0912345678"}));
        assert_ne!(
            link_fingerprint(&linked),
            Some(fingerprint_of_abaha(&changed).as_str())
        );
    }
}
