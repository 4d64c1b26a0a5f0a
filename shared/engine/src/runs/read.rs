//! Reading runs: the latest run of a shop and one run, as their reports show them (R-SYN-5).

use mapping::api::RunReport;

use crate::error::EngineError;
use crate::service::Service;

/// `GET /v1/shops/{shop}/sync`: the latest run, as readers see it ([`RunReport::as_shown`]).
pub async fn latest(svc: &Service, shop: &str) -> Result<RunReport, EngineError> {
    match svc.store.latest_run(shop).await? {
        Some(report) => Ok(report.as_shown()),
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
pub async fn one(svc: &Service, shop: &str, run_id: &str) -> Result<RunReport, EngineError> {
    match svc.store.get_run(shop, run_id).await? {
        Some(report) => Ok(report.as_shown()),
        None => Err(EngineError::not_found(format!(
            "There is no run {run_id} for shop {shop}."
        ))),
    }
}
