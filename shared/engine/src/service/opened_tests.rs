//! A warm container opens each connection once (R-CON-4).
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use secrecy::ExposeSecret;
use store::{SealedSecret, StoreError};

use super::*;

/// The memory sealer, counting opens (each would be a KMS Decrypt), optionally slow.
#[derive(Default)]
struct CountingSealer {
    inner: store::MemorySealer,
    opens: AtomicU32,
    delay: Option<std::time::Duration>,
}

#[async_trait]
impl SecretSealer for CountingSealer {
    async fn seal(&self, shop: &str, secret: &SecretString) -> Result<SealedSecret, StoreError> {
        self.inner.seal(shop, secret).await
    }

    async fn open(&self, shop: &str, sealed: &SealedSecret) -> Result<SecretString, StoreError> {
        self.opens.fetch_add(1, Ordering::Relaxed);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        self.inner.open(shop, sealed).await
    }
}

fn connection(sealed: SealedSecret) -> Connection {
    let mut conn: Connection = serde_json::from_value(serde_json::json!({
        "shop_id": "s1", "account_type": "fnb", "retailer": "r", "client_id": "c",
        "sealed_secret": "", "branch_id": 1,
        "sync": {"products": true, "customers": true, "orders": true},
        "keep_app_product_status": true, "invoice_history_days": 30,
        "created_at": "2026-11-29T02:00:00Z", "updated_at": "2026-11-29T02:00:00Z"
    }))
    .expect("a connection");
    conn.sealed_secret = sealed;
    conn
}

fn service(sealer: Arc<CountingSealer>) -> Service {
    Service::new(ServiceParts {
        settings: Settings::default(),
        store: Arc::new(store::MemoryStore::new()),
        sealer: sealer.clone(),
        queue: Arc::new(store::MemoryQueue::new()),
        kv_config: KiotVietConfig::for_urls("http://127.0.0.1:9", "http://127.0.0.1:9"),
        abaha_token: SecretString::from("t".to_string()),
        admin_token: SecretString::from("a".to_string()),
        clock: Arc::new(SystemClock),
    })
}

#[tokio::test]
async fn r_con_4_a_warm_container_opens_a_secret_once_and_a_changed_one_at_once() {
    // GIVEN a service whose sealer counts opens, and a shop's connection
    let sealer = Arc::new(CountingSealer::default());
    let svc = service(sealer.clone());
    let one = SecretString::from("one".to_string());
    let conn = connection(sealer.seal("s1", &one).await.expect("sealed"));
    // WHEN two jobs of the container open it
    let (a, slot_a) = svc.open_connection(&conn).await.expect("opened");
    let (b, slot_b) = svc.open_connection(&conn).await.expect("opened");
    // THEN the secret was opened once and both share one token slot
    assert_eq!(sealer.opens.load(Ordering::Relaxed), 1);
    assert_eq!((a.expose_secret(), b.expose_secret()), ("one", "one"));
    assert!(Arc::ptr_eq(&slot_a, &slot_b));
    // WHEN the connection is saved with another secret
    let two = SecretString::from("two".to_string());
    let changed = connection(sealer.seal("s1", &two).await.expect("sealed"));
    let (c, slot_c) = svc.open_connection(&changed).await.expect("opened");
    // THEN the next job uses the new secret at once, with a token of its own
    assert_eq!(c.expose_secret(), "two");
    assert_eq!(sealer.opens.load(Ordering::Relaxed), 2);
    assert!(!Arc::ptr_eq(&slot_a, &slot_c));
}

#[tokio::test]
async fn jobs_of_one_shop_starting_together_open_its_secret_once_and_share_one_token() {
    // GIVEN a sealer as slow as KMS on a bad day, and a shop's connection
    let sealer = Arc::new(CountingSealer {
        delay: Some(std::time::Duration::from_millis(50)),
        ..CountingSealer::default()
    });
    let svc = service(sealer.clone());
    let secret = SecretString::from("s".to_string());
    let conn = connection(sealer.seal("s1", &secret).await.expect("sealed"));
    // WHEN a full sync's three jobs (catalog, customers, invoices) open it at the same moment
    let (a, b, c) = tokio::join!(
        svc.open_connection(&conn),
        svc.open_connection(&conn),
        svc.open_connection(&conn)
    );
    let slots: Vec<Arc<TokenSlot>> = [a, b, c]
        .into_iter()
        .map(|r| r.expect("opened").1)
        .collect();
    // THEN KMS was asked once, and all three share one token slot (one token request)
    assert_eq!(sealer.opens.load(Ordering::Relaxed), 1);
    assert!(slots.iter().all(|s| Arc::ptr_eq(s, &slots[0])));
}
