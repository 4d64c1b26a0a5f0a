//! How a pull ends: parts ended without pulling, parts failed with words the owner can act on.

use abaha::AbahaError;
use kiotviet::KvError;
use mapping::api::{PartState, RunError};
use serde_json::Value;

use crate::error::JobError;
use crate::jobs::{Entity, SyncJob};
use crate::runs::{self, Tally};
use crate::service::Service;

/// Ends an entity without pulling (skipped, failed before start) and closes the run if it was last.
pub async fn end_entity(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    state: PartState,
    message: Option<&str>,
) -> Result<(), store::StoreError> {
    let tally = Tally {
        state,
        message: message.map(str::to_string),
        ..Tally::default()
    };
    svc.store
        .put_entity_report(&job.shop_id, &job.run_id, entity.into(), &tally)
        .await?;
    runs::finish_if_done(svc, &job.shop_id, &job.run_id).await
}

/// Ends an entity as failed for an error the pull could not report itself (e.g. the stored secret
/// no longer opens): the owner reads why, the part's checkpoint and lease go, and the run closes
/// if this was its last part — so a broken shop neither hangs its run nor blocks its next one.
pub async fn fail_entity(
    svc: &Service,
    job: &SyncJob,
    entity: Entity,
    error: &JobError,
) -> Result<(), store::StoreError> {
    let shop = job.shop_id.as_str();
    let name = entity.as_str();
    let msg = failure_message(error);
    tracing::warn!(shop, run_id = %job.run_id, entity = name, error = %error, "pull failed");
    svc.store
        .append_errors(shop, &job.run_id, &[RunError::new(name, None, msg.clone())])
        .await?;
    // Only this run's checkpoint: another run may own the entity (the lease was not ours).
    let ours = svc
        .store
        .get_checkpoint(shop, name)
        .await?
        .is_some_and(|v| v.get("run_id").and_then(Value::as_str) == Some(job.run_id.as_str()));
    if ours {
        svc.store.clear_checkpoint(shop, name).await?;
    }
    svc.store
        .release_lease(shop, name, &job.lease_holder())
        .await?;
    end_entity(svc, job, entity, PartState::Failed, Some(&msg)).await
}

/// Words a shop owner can act on for a pull that cannot go on.
pub(super) fn failure_message(e: &JobError) -> String {
    match e {
        JobError::KiotViet(KvError::InvalidCredentials { .. }) | JobError::KiotViet(KvError::Unauthorized) => {
            "KiotViet FnB refused the Client ID and secret. Update the connection with the values from KiotViet FnB (Thiết lập cửa hàng → Thiết lập kết nối API).".into()
        }
        JobError::KiotViet(KvError::UnknownRetailer { .. }) => {
            "KiotViet FnB no longer knows this shop name. Check the connection's retailer name.".into()
        }
        JobError::Abaha(AbahaError::Unauthorized) => "The Abaha Sync API refused the service's token; Abaha's platform team must fix ABAHA_API_TOKEN.".into(),
        JobError::Abaha(AbahaError::UnknownShop { .. }) => "Abaha does not know this shop; check the shop id of the connection.".into(),
        JobError::Store(store::StoreError::SecretRejected { .. }) => {
            "The stored KiotViet secret could not be opened; save the connection again with the secret.".into()
        }
        other => format!("The sync stopped: {other}"),
    }
}
