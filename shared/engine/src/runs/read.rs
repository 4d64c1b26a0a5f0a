//! Reading runs: the latest run of a shop and one run, as their reports show them (R-SYN-5).

use serde::Serialize;
use serde_json::Value;

use crate::error::EngineError;
use crate::service::Service;

/// A run's report as readers see it (CONTRACTS §1 "Run report").
///
/// The stored report as it is, until the store ports answer `mapping::api::RunReport` (the typed
/// report carries no `trigger`, `full`, `read` or `waiting_until` yet, so reading into it now
/// would drop fields the answers have today).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct RunView(pub Value);

impl RunView {
    /// A run whose parts have started is running, although only its parts' reports say so (the
    /// pulls do not write the run's state when they start).
    fn as_shown(mut report: Value) -> Self {
        let started = report["state"] == "queued"
            && report["entities"]
                .as_object()
                .is_some_and(|e| e.values().any(|v| v["state"] != "queued"));
        if started {
            report["state"] = Value::from("running");
        }
        RunView(report)
    }
}

/// `GET /v1/shops/{shop}/sync`: the latest run.
pub async fn latest(svc: &Service, shop: &str) -> Result<RunView, EngineError> {
    match svc.store.latest_run(shop).await? {
        Some(report) => Ok(RunView::as_shown(report)),
        None => {
            if svc.store.get_connection(shop).await?.is_none() {
                return Err(EngineError::unknown_shop(shop));
            }
            Err(EngineError::not_found(
                "This shop has not synced yet. Press Sync (POST /v1/shops/{shop}/sync) to start.",
            ))
        }
    }
}

/// `GET /v1/shops/{shop}/sync/{run_id}`.
pub async fn one(svc: &Service, shop: &str, run_id: &str) -> Result<RunView, EngineError> {
    match svc.store.get_run(shop, run_id).await? {
        Some(report) => Ok(RunView::as_shown(report)),
        None => Err(EngineError::not_found(format!(
            "There is no run {run_id} for shop {shop}."
        ))),
    }
}
