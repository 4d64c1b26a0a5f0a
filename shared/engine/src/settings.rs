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
        }
    }
}

impl Settings {
    /// Reads the documented variables; anything unset keeps its default.
    pub fn from_env() -> Result<Self, String> {
        let mut s = Settings::default();
        if let Some(v) = var("TABLE_NAME") {
            s.table_name = v;
        }
        if let Some(v) = var("ABAHA_API_URL") {
            s.abaha_api_url = v.trim_end_matches('/').to_string();
        }
        s.queues = Queues {
            catalog: var("CATALOG_QUEUE_URL").unwrap_or_default(),
            customers: var("CUSTOMER_QUEUE_URL").unwrap_or_default(),
            invoices: var("INVOICE_QUEUE_URL").unwrap_or_default(),
        };
        if let Some(v) = var("KIOTVIET_GET_BUDGET_PER_HOUR") {
            s.get_budget_per_hour = v.parse().map_err(|_| {
                format!("KIOTVIET_GET_BUDGET_PER_HOUR must be a whole number, got {v:?}")
            })?;
        }
        if let Some(v) = var("SYNC_OVERLAP_MINUTES") {
            let m: u64 = v
                .parse()
                .map_err(|_| format!("SYNC_OVERLAP_MINUTES must be a whole number, got {v:?}"))?;
            s.overlap = Duration::from_secs(m * 60);
        }
        if let Some(v) = var("INVOICE_OVERLAP_MINUTES") {
            let m: u64 = v.parse().map_err(|_| {
                format!("INVOICE_OVERLAP_MINUTES must be a whole number, got {v:?}")
            })?;
            s.invoice_overlap = Duration::from_secs(m * 60);
        }
        if let Some(v) = var("SYNC_JOB_BUDGET_SECS") {
            let secs: u64 = v
                .parse()
                .map_err(|_| format!("SYNC_JOB_BUDGET_SECS must be a whole number, got {v:?}"))?;
            s.job_budget = Duration::from_secs(secs);
        }
        if let Some(v) = var("SYNC_LEASE_TTL_SECS") {
            let secs: u64 = v
                .parse()
                .map_err(|_| format!("SYNC_LEASE_TTL_SECS must be a whole number, got {v:?}"))?;
            s.lease_ttl = Duration::from_secs(secs.max(1));
        }
        for (name, field) in [
            ("PART_LEASE_TTL_SECS", &mut s.part_lease_ttl),
            ("RUN_STALL_SECS", &mut s.stall_after),
        ] {
            if let Some(v) = var(name) {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number, got {v:?}"))?;
                *field = Duration::from_secs(secs.max(1));
            }
        }
        if let Some(v) = var("KIOTVIET_CONCURRENCY") {
            s.kiotviet_concurrency = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=16).contains(n))
                .ok_or_else(|| format!("KIOTVIET_CONCURRENCY must be 1 to 16, got {v:?}"))?;
        }
        if let Some(v) = var("API_DEADLINE_SECS") {
            let secs = v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=25).contains(n))
                .ok_or_else(|| format!("API_DEADLINE_SECS must be 1 to 25, got {v:?}"))?;
            s.api_deadline = Duration::from_secs(secs);
        }
        s.webhook_base_url = var("WEBHOOK_BASE_URL").map(|v| v.trim_end_matches('/').to_string());
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
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
