//! The service: the ports and clients every entry point shares, built once per container.

use std::sync::Arc;
use std::time::Duration;

use abaha::{AbahaClient, AbahaConfig};
use chrono::{DateTime, Utc};
use kiotviet::{Credentials, GetBudget, KiotVietClient, KiotVietConfig, TokenSlot};
use mapping::time::{Clock, SystemClock};
use secrecy::SecretString;
use store::{Connection, JobQueue, SecretSealer, Store};

use crate::settings::{Settings, secret_from_env};

mod budget;
mod observer;

pub use budget::{RESERVE, SharedBudget};
pub use observer::{PushObserver, PushStep};

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
    push_observer: Option<Arc<dyn PushObserver>>,
    /// Per shop: the opened client secret and the KiotViet token, for the container's life and
    /// shared by every job it runs, so a warm container asks neither KMS nor KiotViet's token
    /// host again. Keyed by the connection's version: a saved connection with another secret,
    /// client id or retailer is opened afresh and gets a token of its own. One cell per shop,
    /// held (async) while it is opened: jobs of one shop that start together open it once and
    /// share one token, instead of each asking KMS and the token host (issue 16).
    opened: Arc<std::sync::Mutex<std::collections::HashMap<String, OpenedCell>>>,
}

/// One shop's place in the cache: empty until its connection is first opened.
type OpenedCell = Arc<tokio::sync::Mutex<Option<Opened>>>;

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
    pub fn with_push_observer(mut self, observer: Arc<dyn PushObserver>) -> Self {
        self.push_observer = Some(observer);
        self
    }

    pub(crate) async fn observe_push(&self, order_id: &str, step: PushStep) {
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
        let cell: OpenedCell = {
            let mut cache = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            // A container serving thousands of shops must not grow without bound (a job that
            // holds a dropped cell finishes with it; the next one opens afresh).
            if cache.len() >= OPENED_CACHE_MAX && !cache.contains_key(&conn.shop_id) {
                cache.clear();
            }
            cache.entry(conn.shop_id.clone()).or_default().clone()
        };
        let mut opened = cell.lock().await;
        if let Some(o) = opened.as_ref()
            && o.version == version
        {
            return Ok((
                SecretString::from(o.secret.expose_secret().to_owned()),
                o.token.clone(),
            ));
        }
        let secret = self.sealer.open(&conn.shop_id, &conn.sealed_secret).await?;
        let token = Arc::new(TokenSlot::default());
        *opened = Some(Opened {
            version,
            secret: SecretString::from(secret.expose_secret().to_owned()),
            token: token.clone(),
        });
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

/// Most opened connections one container keeps.
const OPENED_CACHE_MAX: usize = 10_000;

/// Most product links one container keeps (about 10 MB).
const PRODUCT_CACHE_MAX: usize = 100_000;

#[cfg(test)]
mod opened_tests;
