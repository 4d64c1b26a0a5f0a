//! Webhook delivery: what KiotViet POSTs to registered URLs when a product or customer changes.
//!
//! Updates go in the documented envelope `{"Id","Attempt","Notifications":[{"Action","Data":[…]}]}`
//! with PascalCase data; deletes go as the documented bare `{"RemoveId":[…]}` (reference §5.7,
//! both accepted by real receivers). `X-Hub-Signature: sha1=<hex HMAC-SHA256(raw body, Secret)>`
//! — the algorithm is SHA-256 despite the prefix. A 400/401/403/404/405 answer disables the
//! webhook (KiotViet stops sending); other failures are retried with a higher `Attempt`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::KvShared;
use super::model::Webhook;

/// One change, ready to be sent to the webhooks registered for its action.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub action: &'static str,
    /// PascalCase record for updates; `{"RemoveId":[id]}` for deletes.
    pub data: Value,
    pub bare: bool,
}

impl Event {
    pub(crate) fn update(action: &'static str, camel: Value) -> Self {
        Event {
            action,
            data: pascal_case(camel),
            bare: false,
        }
    }

    pub(crate) fn removed(action: &'static str, id: i64) -> Self {
        Event {
            action,
            data: json!({"RemoveId": [id]}),
            bare: true,
        }
    }
}

/// One POST attempt, as recorded for tests.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookDelivery {
    pub webhook_id: i64,
    pub url: String,
    pub action: String,
    /// The envelope `Id` (empty for the bare delete form).
    pub notification_id: String,
    pub attempt: u32,
    /// HTTP status of the receiver's answer, or None when the request failed.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub signature: Option<String>,
    pub body: String,
}

fn pascal_case(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let key = match chars.next() {
                        Some(first) => first.to_uppercase().chain(chars).collect(),
                        None => k,
                    };
                    (key, pascal_case(v))
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(pascal_case).collect()),
        other => other,
    }
}

pub(crate) fn signature(secret: &str, body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(body);
    Some(format!("sha1={}", hex::encode(mac.finalize().into_bytes())))
}

/// Starts one delivery task per (event, matching active webhook). Outside a Tokio runtime
/// nothing is sent.
pub(crate) fn dispatch(
    sh: &Arc<KvShared>,
    events: Vec<Event>,
    hooks: &[Webhook],
    (attempts, delay_ms): (u32, u64),
) {
    if events.is_empty() || hooks.is_empty() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("webhook events raised outside a Tokio runtime were not delivered");
        return;
    };
    for event in events {
        for hook in hooks
            .iter()
            .filter(|h| h.is_active && h.kind == event.action)
        {
            rt.spawn(deliver(
                sh.clone(),
                hook.clone(),
                event.clone(),
                attempts.max(1),
                Duration::from_millis(delay_ms),
            ));
        }
    }
}

async fn deliver(sh: Arc<KvShared>, hook: Webhook, event: Event, attempts: u32, delay: Duration) {
    let id = super::seed::uuid(&mut rand::rng());
    for attempt in 1..=attempts {
        let body = if event.bare {
            event.data.clone()
        } else {
            json!({
                "Id": id, "Attempt": attempt,
                "Notifications": [{"Action": event.action, "Data": [event.data.clone()]}],
            })
        };
        let raw = body.to_string();
        let sig = hook
            .secret
            .as_deref()
            .and_then(|s| signature(s, raw.as_bytes()));
        let mut req = sh
            .http
            .post(&hook.url)
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(5))
            .body(raw.clone());
        if let Some(s) = &sig {
            req = req.header("X-Hub-Signature", s);
        }
        let result = req.send().await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        sh.lock().deliveries.push(WebhookDelivery {
            webhook_id: hook.id,
            url: hook.url.clone(),
            action: event.action.to_string(),
            notification_id: if event.bare {
                String::new()
            } else {
                id.clone()
            },
            attempt,
            status,
            error: result.as_ref().err().map(|e| e.to_string()),
            signature: sig,
            body: raw,
        });
        match status {
            Some(200..=299) => return,
            Some(400 | 401 | 403 | 404 | 405) => {
                let mut st = sh.lock();
                if let Some(h) = st.webhooks.iter_mut().find(|h| h.id == hook.id) {
                    h.is_active = false;
                }
                return;
            }
            _ if attempt < attempts => tokio::time::sleep(delay).await,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_pascal_case_recursively() {
        let v = pascal_case(json!({"id": 1, "masterUnitId": 2, "units": [{"basePrice": 3}]}));
        assert_eq!(
            v,
            json!({"Id": 1, "MasterUnitId": 2, "Units": [{"BasePrice": 3}]})
        );
    }

    #[test]
    fn signature_is_hmac_sha256_hex_with_sha1_prefix() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            sig,
            "sha1=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
