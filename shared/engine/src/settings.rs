//! Settings every function reads from its environment (CONTRACTS.md §3). The local stack sets the
//! same names, so code never knows whether it runs on AWS or on loopback.

use std::time::Duration;

use secrecy::SecretString;

/// The SQS queues jobs travel on, one per pull function.
#[derive(Debug, Clone, Default)]
pub struct Queues {
    pub catalog: String,
    pub customers: String,
    pub invoices: String,
}

/// Everything tunable about the service, read once per container.
#[derive(Debug, Clone)]
pub struct Settings {
    pub table_name: String,
    pub abaha_api_url: String,
    pub queues: Queues,
    /// KiotViet GETs per hour per retailer that all functions together may spend (R-SYN-6).
    pub get_budget_per_hour: u32,
    /// How far back an incremental pull re-reads before its cursor (R-SYN-1).
    pub overlap: Duration,
    /// Invoices are edited late in KiotViet (R-INV-3). The pull filters on modification time, so a
    /// late edit comes back on its own; the window only absorbs clock skew and late commits, and
    /// is longer than the others because an invoice's money matters more than a product's name.
    pub invoice_overlap: Duration,
    /// A lease outlives a crashed holder by this much at most (R-SYN-3). Shorter than the
    /// 15-minute schedule, so that a tick finds the last tick's lease expired and takes it with
    /// one write (a run's end does not write its lease free); longer than a pull function's
    /// timeout (5 min), so that a job queued at a run's start needs no lease write of its own.
    pub lease_ttl: Duration,
    /// A pull renews its part's lease every fifth of this while it runs; a holder that missed
    /// that many renewals is dead, and the part is free for the next delivery or run.
    pub part_lease_ttl: Duration,
    /// A run whose lease nobody renewed for this long, and none of whose parts is held, was
    /// interrupted (its pull died): the next Sync press or tick resumes it from its checkpoints.
    pub stall_after: Duration,
    /// A pull hands over to a continuation when less than this is left before its deadline.
    pub handover_margin: Duration,
    /// Longest time one pull job may run when no Lambda deadline applies (local stack).
    pub job_budget: Duration,
    /// Largest request body the service API accepts.
    pub max_body_bytes: usize,
    /// Public base URL KiotViet webhooks are registered with (none: webhooks are not registered).
    pub webhook_base_url: Option<String>,
    /// KiotViet GETs one shop may have in flight at once within one process (`KIOTVIET_CONCURRENCY`).
    pub kiotviet_concurrency: usize,
    /// The KMS key that seals client secrets (`KMS_KEY_ID`).
    pub kms_key_id: String,
    /// Every service-API call answers within this (`API_DEADLINE_SECS`, default 25): API
    /// Gateway cuts a call at 30 s and the api function's timeout is 29 s, so what KiotViet has
    /// not answered by then is answered for it (`kiotviet_unavailable`, with `Retry-After`).
    pub api_deadline: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table_name: "kiotviet-fnb-sync".into(),
            abaha_api_url: "http://127.0.0.1:9102".into(),
            queues: Queues::default(),
            get_budget_per_hour: 4000,
            overlap: Duration::from_secs(10 * 60),
            invoice_overlap: Duration::from_secs(60 * 60),
            lease_ttl: Duration::from_secs(10 * 60),
            part_lease_ttl: Duration::from_secs(15),
            stall_after: Duration::from_secs(60),
            handover_margin: Duration::from_secs(20),
            job_budget: Duration::from_secs(240),
            max_body_bytes: 256 * 1024,
            webhook_base_url: None,
            kiotviet_concurrency: 4,
            api_deadline: Duration::from_secs(25),
            kms_key_id: "alias/kiotviet-fnb-sync".into(),
        }
    }
}

/// A setting that is missing or cannot be read: which variable, and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set; a deployed function needs it (template.yaml sets it)")]
    Missing { name: &'static str },
    #[error("{name} must be {expected}, got {value:?}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Settings {
    /// Reads the documented variables from the environment; anything unset keeps its default
    /// (the local stack's way: it creates its queues and table itself).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(var)
    }

    /// As [`Settings::from_env`] for a deployed function: the table and the three queues must be
    /// named (a missing queue URL used to become "" and fail every send at run time).
    pub fn deployed_from_env() -> Result<Self, ConfigError> {
        Self::deployed_from_lookup(var)
    }

    /// [`Settings::deployed_from_env`] over any lookup (tests pass a map).
    pub fn deployed_from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        for name in [
            "TABLE_NAME",
            "CATALOG_QUEUE_URL",
            "CUSTOMER_QUEUE_URL",
            "INVOICE_QUEUE_URL",
        ] {
            if nonempty(lookup(name)).is_none() {
                return Err(ConfigError::Missing { name });
            }
        }
        Self::from_lookup(lookup)
    }

    /// The one reader of the service's settings: every documented variable, through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| nonempty(lookup(name));
        let whole = |name: &'static str, v: String| {
            v.parse::<u64>().map_err(|_| ConfigError::Invalid {
                name,
                value: v,
                expected: "a whole number",
            })
        };
        let ranged = |name: &'static str, v: String, low: u64, high: u64, expected| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (low..=high).contains(n))
                .ok_or(ConfigError::Invalid {
                    name,
                    value: v,
                    expected,
                })
        };
        let mut s = Settings::default();
        if let Some(v) = get("TABLE_NAME") {
            s.table_name = v;
        }
        if let Some(v) = get("ABAHA_API_URL") {
            s.abaha_api_url = v.trim_end_matches('/').to_string();
        }
        s.queues = Queues {
            catalog: get("CATALOG_QUEUE_URL").unwrap_or_default(),
            customers: get("CUSTOMER_QUEUE_URL").unwrap_or_default(),
            invoices: get("INVOICE_QUEUE_URL").unwrap_or_default(),
        };
        if let Some(v) = get("KMS_KEY_ID") {
            s.kms_key_id = v;
        }
        if let Some(v) = get("KIOTVIET_GET_BUDGET_PER_HOUR") {
            s.get_budget_per_hour = ranged(
                "KIOTVIET_GET_BUDGET_PER_HOUR",
                v,
                1,
                u64::from(u32::MAX),
                "a whole number",
            )? as u32;
        }
        if let Some(v) = get("SYNC_OVERLAP_MINUTES") {
            s.overlap = Duration::from_secs(whole("SYNC_OVERLAP_MINUTES", v)? * 60);
        }
        if let Some(v) = get("INVOICE_OVERLAP_MINUTES") {
            s.invoice_overlap = Duration::from_secs(whole("INVOICE_OVERLAP_MINUTES", v)? * 60);
        }
        if let Some(v) = get("SYNC_JOB_BUDGET_SECS") {
            s.job_budget = Duration::from_secs(whole("SYNC_JOB_BUDGET_SECS", v)?);
        }
        if let Some(v) = get("SYNC_LEASE_TTL_SECS") {
            s.lease_ttl = Duration::from_secs(whole("SYNC_LEASE_TTL_SECS", v)?.max(1));
        }
        if let Some(v) = get("PART_LEASE_TTL_SECS") {
            s.part_lease_ttl = Duration::from_secs(whole("PART_LEASE_TTL_SECS", v)?.max(1));
        }
        if let Some(v) = get("RUN_STALL_SECS") {
            s.stall_after = Duration::from_secs(whole("RUN_STALL_SECS", v)?.max(1));
        }
        if let Some(v) = get("KIOTVIET_CONCURRENCY") {
            s.kiotviet_concurrency = ranged("KIOTVIET_CONCURRENCY", v, 1, 16, "1 to 16")? as usize;
        }
        if let Some(v) = get("API_DEADLINE_SECS") {
            s.api_deadline = Duration::from_secs(ranged("API_DEADLINE_SECS", v, 1, 25, "1 to 25")?);
        }
        s.webhook_base_url = get("WEBHOOK_BASE_URL").map(|v| v.trim_end_matches('/').to_string());
        Ok(s)
    }
}

/// A secret from the environment: the value itself (`NAME`, local stack), or the name of an SSM
/// SecureString parameter (`NAME_SSM_PARAM`, deployed). Never logged.
pub async fn secret_from_env(
    name: &str,
    ssm: Option<&aws_sdk_ssm::Client>,
) -> Result<SecretString, String> {
    if let Some(v) = var(name) {
        return Ok(SecretString::from(v));
    }
    let param_var = format!("{name}_SSM_PARAM");
    let Some(param) = var(&param_var) else {
        return Err(format!("set {name} (local) or {param_var} (deployed)"));
    };
    let Some(ssm) = ssm else {
        return Err(format!("{param_var} is set but no SSM client is available"));
    };
    let out = ssm
        .get_parameter()
        .name(&param)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not read SSM parameter {param}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(e)
            )
        })?;
    out.parameter()
        .and_then(|p| p.value())
        .map(|v| SecretString::from(v.to_string()))
        .ok_or_else(|| format!("SSM parameter {param} has no value"))
}

fn var(name: &str) -> Option<String> {
    nonempty(std::env::var(name).ok())
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const DEPLOYED: [(&str, &str); 4] = [
        ("TABLE_NAME", "t"),
        ("CATALOG_QUEUE_URL", "https://sqs/c"),
        ("CUSTOMER_QUEUE_URL", "https://sqs/u"),
        ("INVOICE_QUEUE_URL", "https://sqs/i"),
    ];

    #[test]
    fn given_a_deployed_function_without_a_queue_url_then_it_does_not_start() {
        // Issue 13: a missing queue URL used to become "" and fail every send at run time.
        for missing in DEPLOYED.map(|(name, _)| name) {
            let env: Vec<(&str, &str)> = DEPLOYED
                .iter()
                .copied()
                .filter(|(name, _)| *name != missing)
                .collect();
            assert_eq!(
                Settings::deployed_from_lookup(lookup(&env)).unwrap_err(),
                ConfigError::Missing { name: missing }
            );
        }
        let ok = Settings::deployed_from_lookup(lookup(&DEPLOYED)).unwrap();
        assert_eq!(ok.queues.customers, "https://sqs/u");
    }

    #[test]
    fn given_unreadable_values_then_the_error_names_the_variable_and_what_it_must_be() {
        let cases = [
            ("KIOTVIET_CONCURRENCY", "0"),
            ("KIOTVIET_CONCURRENCY", "many"),
            ("API_DEADLINE_SECS", "29"),
            ("SYNC_OVERLAP_MINUTES", "-1"),
            ("KIOTVIET_GET_BUDGET_PER_HOUR", "0"),
        ];
        for (name, value) in cases {
            let err = Settings::from_lookup(lookup(&[(name, value)])).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, value: v, .. } if *n == name && v == value),
                "{name}={value}: {err}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn given_nothing_then_the_local_defaults_hold_and_the_kms_key_is_read_here() {
        let s = Settings::from_lookup(lookup(&[])).unwrap();
        assert_eq!(s.kms_key_id, "alias/kiotviet-fnb-sync");
        let s = Settings::from_lookup(lookup(&[("KMS_KEY_ID", "arn:aws:kms:k")])).unwrap();
        assert_eq!(s.kms_key_id, "arn:aws:kms:k");
    }
}
