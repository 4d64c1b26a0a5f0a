//! The service: the ports and clients every entry point shares, built once per container.

use std::sync::Arc;
use std::time::Duration;

use abaha::{AbahaClient, AbahaConfig};
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use kiotviet::{
    BudgetExhausted, Credentials, GetBudget, KiotVietClient, KiotVietConfig, TokenSlot,
};
use mapping::time::{Clock, SystemClock};
use secrecy::SecretString;
use store::{BudgetAnswer, Connection, JobQueue, SecretSealer, Store};

use crate::settings::{Settings, secret_from_env};

/// Everything a handler needs. Cheap to share: build it once in `main` and borrow it per event.
#[derive(Clone)]
pub struct Service {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub sealer: Arc<dyn SecretSealer>,
    pub queue: Arc<dyn JobQueue>,
    pub http: reqwest::Client,
    pub kv_config: Arc<KiotVietConfig>,
    pub abaha: AbahaClient,
    pub clock: Arc<dyn Clock>,
    pub admin_token_hash: Arc<String>,
    /// Per retailer: how many KiotViet GETs may be in flight in this process (R-SYN-6 courtesy,
    /// and the concurrency the benchmark measures against).
    slots: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    /// KiotViet product id → Abaha product id, per shop: every invoice line needs one, a café
    /// sells the same few hundred products all day, and the link of a product never changes.
    product_ids: Arc<std::sync::Mutex<std::collections::HashMap<(String, i64), String>>>,
    /// Hears each step of every order push; none in service (the model-checking test sets one).
    push_observer: Option<Arc<dyn crate::push::orders::PushObserver>>,
    /// Per shop: the opened client secret and the KiotViet token, for the container's life and
    /// shared by every job it runs, so a warm container asks neither KMS nor KiotViet's token
    /// host again. Keyed by the connection's version: a saved connection with another secret,
    /// client id or retailer is opened afresh and gets a token of its own.
    opened: Arc<std::sync::Mutex<std::collections::HashMap<String, Opened>>>,
}

/// A shop's opened connection, as cached in [`Service`].
struct Opened {
    /// sha256 of the retailer, client id and sealed secret it was opened from.
    version: String,
    secret: SecretString,
    token: Arc<TokenSlot>,
}

/// Why a function could not start: every invocation of it would fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::settings::ConfigError),
    #[error("{name}: {message}")]
    Secret { name: &'static str, message: String },
}

/// The parts a [`Service`] is assembled from (tests and the local stack pass fakes or local servers).
pub struct ServiceParts {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub sealer: Arc<dyn SecretSealer>,
    pub queue: Arc<dyn JobQueue>,
    pub kv_config: KiotVietConfig,
    pub abaha_token: SecretString,
    pub admin_token: SecretString,
    pub clock: Arc<dyn Clock>,
}

impl Service {
    pub fn new(parts: ServiceParts) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let abaha = AbahaClient::new(
            http.clone(),
            AbahaConfig::new(parts.settings.abaha_api_url.clone(), parts.abaha_token),
        );
        use secrecy::ExposeSecret;
        let admin_token_hash = Arc::new(store::hash_token(parts.admin_token.expose_secret()));
        Service {
            settings: Arc::new(parts.settings),
            store: parts.store,
            sealer: parts.sealer,
            queue: parts.queue,
            http,
            kv_config: Arc::new(parts.kv_config),
            abaha,
            clock: parts.clock,
            admin_token_hash,
            slots: Arc::default(),
            product_ids: Arc::default(),
            push_observer: None,
            opened: Arc::default(),
        }
    }

    /// Builds a deployed function's service from its environment (CONTRACTS.md §3) with the AWS
    /// adapters; the table and queues must be named.
    pub async fn from_env() -> Result<Self, StartError> {
        Self::from_env_with(true).await
    }

    /// As [`Service::from_env`], for a function that never writes to Abaha (the dispatcher): it
    /// neither reads the Abaha token nor is granted access to it.
    pub async fn from_env_without_abaha() -> Result<Self, StartError> {
        Self::from_env_with(false).await
    }

    async fn from_env_with(needs_abaha: bool) -> Result<Self, StartError> {
        let settings = Settings::deployed_from_env()?;
        let aws = store::aws_config().await;
        let ssm = aws_sdk_ssm::Client::new(&aws);
        let dynamo = aws_sdk_dynamodb::Client::new(&aws);
        let kms = aws_sdk_kms::Client::new(&aws);
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let key_id = settings.kms_key_id.clone();
        let abaha_token = if needs_abaha {
            secret_from_env("ABAHA_API_TOKEN", Some(&ssm))
                .await
                .map_err(|message| StartError::Secret {
                    name: "ABAHA_API_TOKEN",
                    message,
                })?
        } else {
            SecretString::from(String::new())
        };
        // Pull functions never check the admin token; a missing one must not stop them.
        let admin_token = secret_from_env("ADMIN_TOKEN", Some(&ssm))
            .await
            .unwrap_or_else(|_| SecretString::from(store::new_token()));
        Ok(Service::new(ServiceParts {
            store: Arc::new(store::DynamoStore::new(dynamo, settings.table_name.clone())),
            sealer: Arc::new(store::KmsSealer::new(kms, key_id)),
            queue: Arc::new(store::SqsQueue::new(sqs)),
            kv_config: KiotVietConfig::from_env(),
            abaha_token,
            admin_token,
            clock: Arc::new(SystemClock),
            settings,
        }))
    }

    /// A plain FnB connection of `shop`, for unit tests (its sealed secret opens nowhere).
    #[cfg(test)]
    pub(crate) fn test_connection(shop: &str) -> Connection {
        let now = Utc::now();
        Connection {
            shop_id: shop.into(),
            account_type: "fnb".into(),
            retailer: "cafe".into(),
            client_id: "id".into(),
            sealed_secret: store::SealedSecret::from_base64("c2VjcmV0"),
            branch_id: 1,
            sync: store::Switches {
                products: true,
                customers: true,
                orders: true,
            },
            keep_app_product_status: true,
            invoice_history_days: 30,
            shop_token_hash: None,
            webhook_secret: None,
            webhook_ids: vec![],
            created_at: now,
            updated_at: now,
        }
    }

    /// A service on the in-memory fakes, for unit tests (KiotViet and Abaha unreachable).
    #[cfg(test)]
    pub(crate) fn in_memory(settings: Settings, queue: store::MemoryQueue) -> Self {
        Service::new(ServiceParts {
            settings,
            store: Arc::new(store::MemoryStore::new()),
            sealer: Arc::new(store::MemorySealer::new()),
            queue: Arc::new(queue),
            kv_config: KiotVietConfig::for_urls("http://127.0.0.1:9", "http://127.0.0.1:9"),
            abaha_token: SecretString::from("t".to_string()),
            admin_token: SecretString::from("a".to_string()),
            clock: Arc::new(SystemClock),
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// This service with `observer` hearing every step of every order push (tests that pause or
    /// crash pushes between steps).
    pub fn with_push_observer(
        mut self,
        observer: Arc<dyn crate::push::orders::PushObserver>,
    ) -> Self {
        self.push_observer = Some(observer);
        self
    }

    pub(crate) async fn observe_push(&self, order_id: &str, step: crate::push::orders::PushStep) {
        if let Some(observer) = &self.push_observer {
            observer.at(order_id, step).await;
        }
    }

    /// The deadline of a service-API call that starts now ([`Settings::api_deadline`]).
    pub fn api_deadline(&self) -> retry::Deadline {
        retry::Deadline::after(self.settings.api_deadline)
    }

    /// A KiotViet client for one shop's connection: opens the sealed secret, shares the GET budget
    /// of the retailer across every function (R-SYN-6).
    /// Each GET takes exactly one call from the budget (pushes, webhooks: a few GETs each).
    pub async fn kiotviet_for(
        &self,
        conn: &Connection,
    ) -> Result<KiotVietClient, store::StoreError> {
        self.kiotviet_reserving(conn, 1).await
    }

    /// For pulls, which make many GETs: the budget is reserved [`RESERVE`] calls at a time.
    pub async fn kiotviet_for_pull(
        &self,
        conn: &Connection,
    ) -> Result<KiotVietClient, store::StoreError> {
        self.kiotviet_for_pull_prepaid(conn, None).await
    }

    /// As [`Service::kiotviet_for_pull`], holding one GET already taken from the budget window
    /// `prepaid` (the run's start pays the first page of each pull, R-SYN-6).
    pub async fn kiotviet_for_pull_prepaid(
        &self,
        conn: &Connection,
        prepaid: Option<DateTime<Utc>>,
    ) -> Result<KiotVietClient, store::StoreError> {
        let (secret, token) = self.open_connection(conn).await?;
        let creds = Credentials {
            retailer: conn.retailer.clone(),
            client_id: conn.client_id.clone(),
            client_secret: secret,
        };
        let mut budget = SharedBudget {
            reserve: RESERVE,
            ..SharedBudget::exact(
                self.store.clone(),
                self.clock.clone(),
                self.settings.get_budget_per_hour,
            )
        };
        if let Some(window) = prepaid {
            budget.granted = std::sync::atomic::AtomicU32::new(1);
            budget.reserved = std::sync::Mutex::new((Some(window), 1));
        }
        Ok(KiotVietClient::with_token_slot(
            self.http.clone(),
            self.kv_config.clone(),
            creds,
            Arc::new(budget),
            token,
        ))
    }

    async fn kiotviet_reserving(
        &self,
        conn: &Connection,
        reserve: u32,
    ) -> Result<KiotVietClient, store::StoreError> {
        let (secret, token) = self.open_connection(conn).await?;
        Ok(self.kiotviet_with_slot(
            Credentials {
                retailer: conn.retailer.clone(),
                client_id: conn.client_id.clone(),
                client_secret: secret,
            },
            reserve,
            token,
        ))
    }

    /// The client secret of a connection and the token slot of its credentials: from this
    /// container's cache when the connection is the version cached, else opened (KMS) and cached.
    pub(crate) async fn open_connection(
        &self,
        conn: &Connection,
    ) -> Result<(SecretString, Arc<TokenSlot>), store::StoreError> {
        use secrecy::ExposeSecret;
        let version = store::hash_token(&format!(
            "{}\u{1f}{}\u{1f}{}",
            conn.retailer,
            conn.client_id,
            conn.sealed_secret.as_base64()
        ));
        {
            let cache = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(o) = cache.get(&conn.shop_id)
                && o.version == version
            {
                return Ok((
                    SecretString::from(o.secret.expose_secret().to_owned()),
                    o.token.clone(),
                ));
            }
        }
        let secret = self.sealer.open(&conn.shop_id, &conn.sealed_secret).await?;
        let token = Arc::new(TokenSlot::default());
        let mut cache = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        // A container serving thousands of shops must not grow without bound.
        if cache.len() >= OPENED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            conn.shop_id.clone(),
            Opened {
                version,
                secret: SecretString::from(secret.expose_secret().to_owned()),
                token: token.clone(),
            },
        );
        Ok((secret, token))
    }

    /// The Abaha ids of KiotViet products, from this container's cache or the ID map (R-INV-2).
    /// Only found links are cached: a product not synced yet is asked again next time.
    pub async fn product_links(
        &self,
        shop: &str,
        kiotviet_ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, store::IdLink>, store::StoreError> {
        let mut found = std::collections::HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.product_ids.lock().unwrap_or_else(|e| e.into_inner());
            for id in kiotviet_ids {
                match cache.get(&(shop.to_string(), *id)) {
                    Some(abaha_id) => {
                        found.insert(
                            *id,
                            store::IdLink {
                                abaha_id: abaha_id.clone(),
                                hash: None,
                            },
                        );
                    }
                    None => missing.push(*id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let fetched = self
            .store
            .get_links(shop, store::IdKind::Product, &missing)
            .await?;
        let mut cache = self.product_ids.lock().unwrap_or_else(|e| e.into_inner());
        // A long-lived container serving thousands of shops must not grow without bound.
        if cache.len() > PRODUCT_CACHE_MAX {
            cache.clear();
        }
        for (id, link) in fetched {
            cache.insert((shop.to_string(), id), link.abaha_id.clone());
            found.insert(id, link);
        }
        Ok(found)
    }

    /// The in-flight GET slots of one retailer in this process.
    pub fn kiotviet_slots(&self, retailer: &str) -> Arc<tokio::sync::Semaphore> {
        let mut map = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(retailer.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.settings.kiotviet_concurrency.max(1),
                ))
            })
            .clone()
    }

    pub fn kiotviet_with(&self, creds: Credentials) -> KiotVietClient {
        self.kiotviet_with_reserve(creds, 1)
    }

    fn kiotviet_with_reserve(&self, creds: Credentials, reserve: u32) -> KiotVietClient {
        self.kiotviet_with_slot(creds, reserve, Arc::default())
    }

    fn kiotviet_with_slot(
        &self,
        creds: Credentials,
        reserve: u32,
        token: Arc<TokenSlot>,
    ) -> KiotVietClient {
        let budget: Arc<dyn GetBudget> = Arc::new(SharedBudget {
            reserve: reserve.max(1),
            ..SharedBudget::exact(
                self.store.clone(),
                self.clock.clone(),
                self.settings.get_budget_per_hour,
            )
        });
        KiotVietClient::with_token_slot(
            self.http.clone(),
            self.kv_config.clone(),
            creds,
            budget,
            token,
        )
    }
}

/// The KiotViet GET budget of one retailer, kept in DynamoDB so that every function and every
/// concurrent run of the shop draws from the same hourly allowance (R-SYN-6).
///
/// Calls are reserved from the table several at a time and handed out locally, so a long pull
/// costs one DynamoDB write per [`RESERVE`] GETs, not one per GET. A reservation grows with what
/// the client has used (1, 1, 2, 4, … up to `reserve`): what a client leaves unused when it is
/// dropped is simply not spent, so a short pull (an incremental run: one GET) must not reserve
/// more than it uses, and a long one wastes less than `reserve`.
pub struct SharedBudget {
    pub store: Arc<dyn store::BudgetStore>,
    pub clock: Arc<dyn Clock>,
    pub per_hour: u32,
    /// Most calls taken from the table at once (1: exactly what is asked).
    pub reserve: u32,
    /// Calls this client has been granted by the table so far.
    pub granted: std::sync::atomic::AtomicU32,
    /// (window of the reservation, calls left in it)
    pub reserved: std::sync::Mutex<(Option<DateTime<Utc>>, u32)>,
    /// One refill at a time: GETs that find the reservation spent together wait for one refill
    /// instead of each taking `reserve` calls from the table.
    pub refill: tokio::sync::Mutex<()>,
}

impl SharedBudget {
    /// A budget that takes exactly the calls asked for, up to `per_hour`.
    pub fn exact(store: Arc<dyn store::BudgetStore>, clock: Arc<dyn Clock>, per_hour: u32) -> Self {
        SharedBudget {
            store,
            clock,
            per_hour,
            reserve: 1,
            granted: std::sync::atomic::AtomicU32::new(0),
            reserved: std::sync::Mutex::new((None, 0)),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes `n` calls from this client's reservation for `window`, if it holds them.
    fn take_reserved(&self, window: DateTime<Utc>, n: u32) -> bool {
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        if r.0 == Some(window) && r.1 >= n {
            r.1 -= n;
            return true;
        }
        false
    }
}

/// Most opened connections one container keeps.
const OPENED_CACHE_MAX: usize = 10_000;

/// Most product links one container keeps (about 10 MB).
const PRODUCT_CACHE_MAX: usize = 100_000;

/// Most GETs a pull reserves from the shared budget at once.
pub const RESERVE: u32 = 25;

#[async_trait]
impl GetBudget for SharedBudget {
    async fn take(&self, retailer: &str, n: u32) -> Result<(), BudgetExhausted> {
        let now = self.clock.now();
        let window = now.duration_trunc(ChronoDuration::hours(1)).unwrap_or(now);
        if self.take_reserved(window, n) {
            return Ok(());
        }
        let _refilling = self.refill.lock().await;
        // Someone else may have refilled while this one waited.
        if self.take_reserved(window, n) {
            return Ok(());
        }
        // Reserve about as many as used so far, up to `reserve`; near the limit, only what is asked.
        let used = self.granted.load(std::sync::atomic::Ordering::Relaxed);
        let want = n.max(self.reserve.min(used.max(1)));
        let answer = match self.store.take(retailer, window, want, self.per_hour).await {
            Ok(BudgetAnswer::Exhausted { .. }) if want > n => self
                .store
                .take(retailer, window, n, self.per_hour)
                .await
                .map(|a| (a, n)),
            other => other.map(|a| (a, want)),
        };
        match answer.map(|(a, got)| {
            if matches!(a, BudgetAnswer::Granted { .. }) {
                self.granted
                    .fetch_add(got, std::sync::atomic::Ordering::Relaxed);
                let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
                let left = if r.0 == Some(window) { r.1 } else { 0 };
                *r = (Some(window), left + got - n);
            }
            a
        }) {
            Ok(BudgetAnswer::Granted { .. }) => Ok(()),
            Ok(BudgetAnswer::Exhausted { .. }) => Err(BudgetExhausted {
                retry_at: window + ChronoDuration::hours(1),
            }),
            // The budget is a guard, not the source of truth: a storage hiccup must not stop a sync.
            // KiotViet's own 429 (retried with backoff) still protects the shop.
            Err(e) => {
                tracing::warn!(error = %e, "GET budget unavailable; proceeding without it");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use mapping::time::FixedClock;
    use store::BudgetStore;

    /// The memory store, answering budget takes only after yielding, as a table would.
    #[derive(Default)]
    struct SlowBudget {
        table: store::MemoryStore,
        calls: std::sync::atomic::AtomicU32,
    }

    impl SlowBudget {
        async fn used(&self, retailer: &str, window: DateTime<Utc>) -> u32 {
            match self.table.take(retailer, window, 0, u32::MAX).await {
                Ok(BudgetAnswer::Granted { used }) => used,
                other => panic!("{other:?}"),
            }
        }
    }

    #[async_trait]
    impl store::BudgetStore for SlowBudget {
        async fn take(
            &self,
            retailer: &str,
            window_start: DateTime<Utc>,
            n: u32,
            limit: u32,
        ) -> Result<BudgetAnswer, store::StoreError> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.table.take(retailer, window_start, n, limit).await
        }
    }

    #[tokio::test]
    async fn r_syn_6_concurrent_gets_share_one_refill_and_the_table_counts_about_what_was_used() {
        // GIVEN a pull client reserving up to RESERVE GETs at a time
        let table = Arc::new(SlowBudget::default());
        let now: DateTime<Utc> = "2026-11-29T09:30:00Z".parse().expect("a time");
        let budget = Arc::new(SharedBudget {
            reserve: RESERVE,
            ..SharedBudget::exact(table.clone(), Arc::new(FixedClock(now)), 5000)
        });
        let window = now
            .duration_trunc(ChronoDuration::hours(1))
            .expect("an hour");
        // WHEN 100 GETs ask for a call, 20 at the same moment
        for _ in 0..5 {
            let takes = (0..20).map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move { budget.take("shop", 1).await })
            });
            for take in futures::future::join_all(takes).await {
                assert!(matches!(take, Ok(Ok(()))), "{take:?}");
            }
        }
        // THEN the table counts what was used and less than one reservation more
        let used = table.used("shop", window).await;
        assert!((100..100 + RESERVE).contains(&used), "{used}");
        // AND it was asked a handful of times, not once per GET that found the reservation spent
        let calls = table.calls.load(std::sync::atomic::Ordering::Relaxed);
        assert!(calls <= 10, "{calls} table calls for 100 GETs");
    }

    #[tokio::test]
    async fn r_syn_6_a_pull_making_one_get_reserves_one() {
        // GIVEN a pull client reserving up to RESERVE GETs at a time
        let table = Arc::new(SlowBudget::default());
        let now: DateTime<Utc> = "2026-11-29T09:30:00Z".parse().expect("a time");
        let budget = SharedBudget {
            reserve: RESERVE,
            ..SharedBudget::exact(table.clone(), Arc::new(FixedClock(now)), 5000)
        };
        // WHEN it makes one GET (an incremental run with nothing new) and is dropped
        assert!(budget.take("shop", 1).await.is_ok());
        drop(budget);
        // THEN the shop's allowance is down by one, not by a reservation left unused
        let window = now
            .duration_trunc(ChronoDuration::hours(1))
            .expect("an hour");
        assert_eq!(table.used("shop", window).await, 1);
    }
}

#[cfg(test)]
mod opened_tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use secrecy::ExposeSecret;
    use store::{SealedSecret, StoreError};

    use super::*;

    /// The memory sealer, counting opens (each would be a KMS Decrypt).
    #[derive(Default)]
    struct CountingSealer {
        inner: store::MemorySealer,
        opens: AtomicU32,
    }

    #[async_trait]
    impl SecretSealer for CountingSealer {
        async fn seal(
            &self,
            shop: &str,
            secret: &SecretString,
        ) -> Result<SealedSecret, StoreError> {
            self.inner.seal(shop, secret).await
        }

        async fn open(
            &self,
            shop: &str,
            sealed: &SealedSecret,
        ) -> Result<SecretString, StoreError> {
            self.opens.fetch_add(1, Ordering::Relaxed);
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

    #[tokio::test]
    async fn r_con_4_a_warm_container_opens_a_secret_once_and_a_changed_one_at_once() {
        // GIVEN a service whose sealer counts opens, and a shop's connection
        let sealer = Arc::new(CountingSealer::default());
        let svc = Service::new(ServiceParts {
            settings: Settings::default(),
            store: Arc::new(store::MemoryStore::new()),
            sealer: sealer.clone(),
            queue: Arc::new(store::MemoryQueue::new()),
            kv_config: KiotVietConfig::for_urls("http://127.0.0.1:9", "http://127.0.0.1:9"),
            abaha_token: SecretString::from("t".to_string()),
            admin_token: SecretString::from("a".to_string()),
            clock: Arc::new(SystemClock),
        });
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
}
