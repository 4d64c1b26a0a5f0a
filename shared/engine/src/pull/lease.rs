//! The part's lease (issue 15) and its heartbeat.

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use store::LeaseAnswer;
use tokio::task::JoinHandle;

use super::PullEnd;
use super::finish::end_entity;
use crate::model::{Entity, SyncJob};
use crate::service::Service;

/// A part's lease for one delivery (fencing token `run/invocation`), taken lazily: only before the
/// pull's first write, so an idle pull writes no lease at all (issue 16), while two deliveries of
/// one part never write at once (issue 15). Renewed by a [`Heartbeat`] while held.
pub(super) struct PartLease {
    shop: String,
    name: String,
    holder: String,
    heartbeat: Option<Heartbeat>,
    svc: Service,
}

impl PartLease {
    pub(super) fn new(svc: &Service, shop: &str, name: &str, holder: String) -> Self {
        PartLease {
            shop: shop.to_string(),
            name: name.to_string(),
            holder,
            heartbeat: None,
            svc: svc.clone(),
        }
    }

    pub(super) fn held(&self) -> bool {
        self.heartbeat.is_some()
    }

    /// Takes the part for this delivery unless it is held already. `Some(end)`: it is not this
    /// delivery's — another delivery of the run has it (wait, then look again) or another run
    /// (this part of this run is skipped, R-SYN-3); nothing was written for it.
    pub(super) async fn take(
        &mut self,
        svc: &Service,
        job: &SyncJob,
        entity: Entity,
    ) -> Result<Option<PullEnd>, store::StoreError> {
        if self.held() {
            return Ok(None);
        }
        let now = svc.now();
        match svc
            .store
            .acquire_lease(&self.shop, &self.name, &self.holder, part_until(svc), now)
            .await?
        {
            LeaseAnswer::Acquired => {
                self.heartbeat = Some(Heartbeat::start(svc, &self.shop, &self.name, &self.holder));
                Ok(None)
            }
            LeaseAnswer::HeldBy { holder, until }
                if holder.starts_with(&format!("{}/", job.run_id)) =>
            {
                // The same run, another delivery (a redelivered message, a crashed pull): never
                // two pulls of one part at once, and a dead holder's part is taken over soon.
                let delay = (until - now).to_std().unwrap_or_default() + Duration::from_secs(1);
                tracing::info!(shop = %self.shop, run_id = %job.run_id, entity = %self.name, %holder, "part held by another delivery of this run; waiting");
                Ok(Some(PullEnd::Wait { delay }))
            }
            LeaseAnswer::HeldBy { holder, .. } => {
                // R-SYN-3: another run is pulling this entity; this trigger is harmless.
                let msg = format!(
                    "Another run ({holder}) is syncing {}; this run left it to that one.",
                    self.name
                );
                end_entity(
                    svc,
                    job,
                    entity,
                    mapping::api::PartState::Skipped,
                    Some(&msg),
                )
                .await?;
                Ok(Some(PullEnd::Done))
            }
        }
    }

    /// Renews a held lease; `false` once another has it (the pull must write nothing more).
    pub(super) async fn still_ours(&self, svc: &Service) -> Result<bool, store::StoreError> {
        svc.store
            .renew_lease(&self.shop, &self.name, &self.holder, part_until(svc))
            .await
    }

    /// Frees a held part at once (a continuation or the next run may take it); nothing when the
    /// pull never took it.
    pub(super) async fn release(&mut self) -> Result<(), store::StoreError> {
        if self.heartbeat.take().is_some() {
            self.svc
                .store
                .release_lease(&self.shop, &self.name, &self.holder)
                .await?;
        }
        Ok(())
    }
}

/// When a part's lease taken or renewed now runs out.
pub(super) fn part_until(svc: &Service) -> DateTime<Utc> {
    svc.now()
        + ChronoDuration::from_std(svc.settings.part_lease_ttl)
            .unwrap_or(ChronoDuration::seconds(15))
}

/// Renews a part's lease five times per `part_lease_ttl` until dropped (the pull ended, or its
/// task was killed). It stops by itself once a renewal finds the lease gone or taken; the pull's
/// own fence (`save_progress`, the last writes) then stops the pull.
pub(super) struct Heartbeat(JoinHandle<()>);

impl Heartbeat {
    pub(super) fn start(svc: &Service, shop: &str, part: &str, holder: &str) -> Heartbeat {
        let (svc, shop, part, holder) = (
            svc.clone(),
            shop.to_string(),
            part.to_string(),
            holder.to_string(),
        );
        Heartbeat(tokio::spawn(async move {
            let every = (svc.settings.part_lease_ttl / 5).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                match svc
                    .store
                    .renew_lease(&shop, &part, &holder, part_until(&svc))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(shop, entity = part, error = %e, "lease renewal failed")
                    }
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}
