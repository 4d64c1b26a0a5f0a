//! The shop's webhooks in KiotViet: registered when a connection is saved (with a fresh secret,
//! sealed like the client secret), removed on disconnect. Neither ever fails the connection call:
//! without webhooks the scheduled pull still keeps the shop in step (R-SYN-8).

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::join_all;
use kiotviet::{KiotVietClient, KvError};
use secrecy::{ExposeSecret, SecretString};
use store::{Connection, SealedSecret};

use crate::service::Service;

/// The five events KiotViet FnB sends (reference §5.7).
pub const EVENTS: [&str; 5] = [
    "product.update",
    "product.delete",
    "stock.update",
    "customer.update",
    "customer.delete",
];

/// Random bytes in a webhook secret; the reference asks for at least 8 characters, base64-encoded.
const SECRET_BYTES: usize = 24;

/// Removal on disconnect is best effort and must not hold the answer up for long.
const REMOVE_WITHIN: Duration = Duration::from_secs(5);

/// The webhook fields of a connection after a save, and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub secret: Option<SealedSecret>,
    pub ids: Vec<i64>,
    /// Why webhooks are not active (None when they are).
    pub message: Option<String>,
}

/// The URL one event is delivered to. The `event` parameter names the event of the bare
/// `{"RemoveId": […]}` delete form, which carries no action of its own.
pub fn delivery_url(base: &str, shop: &str, event: &str) -> String {
    format!(
        "{}/v1/kiotviet/webhooks/{shop}?event={event}",
        base.trim_end_matches('/')
    )
}

/// A fresh webhook secret: base64 of random bytes, the exact string KiotViet keys its HMAC with.
fn new_secret() -> SecretString {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    SecretString::from(STANDARD.encode(bytes))
}

/// Registers the five webhooks for `shop` with a fresh secret, replacing the ones `existing`
/// registered (deleted first: KiotViet refuses a second hook of the same type and URL, and a
/// re-save must not pile hooks up). `kv` is the client whose credentials were just checked.
///
/// Without a public base URL (`WEBHOOK_BASE_URL`) nothing changes in KiotViet.
pub async fn register(
    svc: &Service,
    kv: &KiotVietClient,
    shop: &str,
    existing: Option<&Connection>,
) -> Registration {
    let kept = Registration {
        secret: existing.and_then(|c| c.webhook_secret.clone()),
        ids: existing.map(|c| c.webhook_ids.clone()).unwrap_or_default(),
        message: None,
    };
    let Some(base) = svc.settings.webhook_base_url.as_deref() else {
        let message = kept.ids.is_empty().then(|| {
            "KiotViet webhooks are not registered: this deployment has no public webhook URL \
             (WEBHOOK_BASE_URL). Changes arrive with the scheduled sync."
                .to_string()
        });
        return Registration { message, ..kept };
    };

    let old = join_all(kept.ids.iter().map(|id| kv.delete_webhook(*id))).await;
    let still_there: Vec<i64> = kept
        .ids
        .iter()
        .zip(&old)
        .filter(|(_, r)| r.is_err())
        .map(|(id, _)| *id)
        .collect();
    if let Some(Err(e)) = old.iter().find(|r| r.is_err()) {
        tracing::warn!(shop, error = %e, "could not remove the old KiotViet webhooks; keeping them");
        return Registration {
            ids: still_there,
            message: Some(format!(
                "The KiotViet webhooks registered before could not be replaced ({e}); the ones left keep working. Save the connection again to retry."
            )),
            ..kept
        };
    }

    let secret = new_secret();
    let sealed = match svc.sealer.seal(shop, &secret).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(shop, error = %e, "could not seal a webhook secret");
            return inactive("the webhook secret could not be stored safely".into());
        }
    };
    let registered = join_all(EVENTS.iter().map(|event| {
        let url = delivery_url(base, shop, event);
        let secret = secret.expose_secret();
        async move { kv.register_webhook(event, &url, secret).await }
    }))
    .await;
    let ids: Vec<i64> = registered
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    if let Some(Err(e)) = registered.iter().find(|r| r.is_err()) {
        tracing::warn!(shop, error = %e, registered = ids.len(), "KiotViet refused a webhook registration");
        // All five or none: a half set would look active and silently miss events.
        remove(kv, shop, &ids).await;
        return inactive(describe(e));
    }
    tracing::info!(shop, ids = ?ids, "KiotViet webhooks registered");
    Registration {
        secret: Some(sealed),
        ids,
        message: None,
    }
}

fn inactive(why: String) -> Registration {
    Registration {
        secret: None,
        ids: vec![],
        message: Some(format!(
            "KiotViet webhooks are not active: {why}. Changes arrive with the scheduled sync; save the connection again to retry."
        )),
    }
}

fn describe(e: &KvError) -> String {
    match e {
        KvError::Rejected { message, .. } => {
            format!("KiotViet refused the registration (\"{message}\")")
        }
        other => format!("KiotViet could not register them ({other})"),
    }
}

/// Deletes webhooks in KiotViet, best effort; answers how many are gone.
pub async fn remove(kv: &KiotVietClient, shop: &str, ids: &[i64]) -> usize {
    let results = join_all(ids.iter().map(|id| kv.delete_webhook(*id))).await;
    for (id, r) in ids.iter().zip(&results) {
        if let Err(e) = r {
            tracing::warn!(shop, webhook_id = id, error = %e, "could not remove a KiotViet webhook");
        }
    }
    results.iter().filter(|r| r.is_ok()).count()
}

/// On disconnect: removes the connection's webhooks in KiotViet, best effort and bounded in time.
/// A hook left behind only delivers to a shop we no longer know, which is answered and dropped.
pub async fn unregister(svc: &Service, conn: &Connection) -> usize {
    if conn.webhook_ids.is_empty() {
        return 0;
    }
    let kv = match svc.kiotviet_for(conn).await {
        Ok(kv) => kv.with_deadline(Some(Instant::now() + REMOVE_WITHIN)),
        Err(e) => {
            tracing::warn!(shop = %conn.shop_id, error = %e, "could not open the secret to remove webhooks");
            return 0;
        }
    };
    match tokio::time::timeout(REMOVE_WITHIN, remove(&kv, &conn.shop_id, &conn.webhook_ids)).await {
        Ok(n) => n,
        Err(_) => {
            tracing::warn!(shop = %conn.shop_id, "removing KiotViet webhooks timed out");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_syn_8_secrets_are_fresh_base64_of_enough_random_bytes() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a.expose_secret(), b.expose_secret());
        let decoded = STANDARD.decode(a.expose_secret()).expect("base64");
        assert_eq!(decoded.len(), SECRET_BYTES);
        const { assert!(SECRET_BYTES >= 16) };
    }

    #[test]
    fn r_syn_8_delivery_urls_name_shop_and_event() {
        assert_eq!(
            delivery_url("https://sync.example/", "s-1", "product.delete"),
            "https://sync.example/v1/kiotviet/webhooks/s-1?event=product.delete"
        );
    }
}
