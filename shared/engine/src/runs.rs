//! Sync runs: the "Sync" button and the schedule start one (R-CON-5), pull jobs report into it
//! (R-SYN-5), and the run ends when every entity has.
//!
//! At most one run per shop is active: a lease with scope `run` holds the run id, so a second
//! trigger answers the active run instead of starting another (R-SYN-3). A run's end does not
//! write the lease free: it expires (`lease_ttl`, shorter than the schedule's 15 minutes), and a
//! trigger that finds it held by a run that has ended takes it over.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use mapping::api::{EntityReport, ManualAction, RunReport, RunState, SyncRequest};
use serde::Serialize;
use serde_json::json;
use store::{Connection, LeaseAnswer};

use crate::error::EngineError;
use crate::model::{Entity, EntitySwitch, SyncJob};
pub use crate::model::{RUN_SCOPE, Tally};
use crate::queues::EntityQueue;
use crate::service::Service;

mod read;

pub use read::{latest, one};

/// What started a run (the report's `trigger`).
pub use mapping::api::Trigger;

/// The answer to a start request (`202 {"run_id", "already_running"}` on the service API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Started {
    pub run_id: String,
    pub already_running: bool,
}

/// `POST /v1/shops/{shop}/sync`: a run of what `req` asks for (default: every switched-on part,
/// incremental), or the shop's active run.
pub async fn start_from_api(
    svc: &Service,
    shop: &str,
    req: SyncRequest,
) -> Result<Started, EngineError> {
    let conn = svc
        .store
        .get_connection(shop)
        .await?
        .ok_or_else(|| EngineError::unknown_shop(shop))?;
    let requested: Option<Vec<Entity>> = req.entities;
    start(
        svc,
        &conn,
        requested,
        req.full.unwrap_or(false),
        Trigger::Api,
    )
    .await
}

/// Starts a run of `entities` (default: every switched-on entity) unless one is active.
pub async fn start(
    svc: &Service,
    conn: &Connection,
    entities: Option<Vec<Entity>>,
    full: bool,
    trigger: Trigger,
) -> Result<Started, EngineError> {
    let shop = conn.shop_id.as_str();
    let switched_on: Vec<Entity> = Entity::ALL
        .into_iter()
        .filter(|e| e.is_switched_on(conn))
        .collect();
    let entities = match entities {
        None => switched_on,
        Some(list) if list.is_empty() => {
            return Err(EngineError::validation(
                "entities is empty: name at least one of categories, products, customers, invoices, or leave it out to sync every switched-on part.",
            ));
        }
        Some(list) => {
            // R-CON-6: switched-off parts are never synced, so asking for one is a mistake to explain.
            let off: Vec<&str> = list
                .iter()
                .filter(|e| !e.is_switched_on(conn))
                .map(|e| e.as_str())
                .collect();
            if !off.is_empty() {
                return Err(EngineError::validation(format!(
                    "These parts are switched off for this shop: {}. Switch them on in the connection first.",
                    off.join(", ")
                ))
                .with_details(json!({"switched_off": off})));
            }
            let mut list = list;
            list.sort();
            list.dedup();
            list
        }
    };
    if entities.is_empty() {
        return Err(EngineError::validation(
            "Nothing to sync: products, customers and orders are all switched off for this shop.",
        ));
    }

    let now = svc.now();
    let run_id = new_run_id(now);
    let until = now
        + ChronoDuration::from_std(svc.settings.lease_ttl).unwrap_or(ChronoDuration::minutes(15));
    // A run's end leaves its lease to expire (one write fewer per run): a lease whose run has
    // ended is free. It is taken over with the same conditional put, told to count the lease as
    // expired only up to the expiry it was read with: if another trigger took it over (or its
    // run renewed it) since, the put fails and that run is the answer.
    let mut expired_at = now;
    let mut tries = 0;
    loop {
        tries += 1;
        let (holder, held_until) = match svc
            .store
            .acquire_lease(shop, RUN_SCOPE, &run_id, until, expired_at)
            .await?
        {
            LeaseAnswer::Acquired => {
                // The shop's previous run, if its lease lapsed unfinished, is reported failed
                // now — never at the cost of the new run: the lease is taken, it must be created.
                if let Err(e) = crate::sweep::close_abandoned(svc, shop, now).await {
                    tracing::warn!(shop, error = %e, "could not close the previous run");
                }
                break;
            }
            LeaseAnswer::HeldBy { holder, until } => (holder, until),
        };
        let ended = tries == 1
            && svc
                .store
                .get_run(shop, &holder)
                .await?
                .is_some_and(|r| r.state.is_finished());
        if !ended {
            // A run whose pull died is resumed from its checkpoints, not waited out.
            if let Err(e) =
                crate::sweep::resume_if_stalled(svc, conn, &holder, held_until, now).await
            {
                tracing::warn!(shop, run_id = %holder, error = %e, "could not resume a stalled run");
            }
            tracing::info!(shop, run_id = %holder, "run already active");
            return Ok(Started {
                run_id: holder,
                already_running: true,
            });
        }
        expired_at = held_until;
    }
    let initial = RunReport::queued(&run_id, trigger, full, now, entities.iter().copied());
    svc.store.create_run(shop, &run_id, &initial).await?;
    let prepaid = prepay_first_pages(svc, conn, entities.len() as u32, now).await;

    // One job per pull function; the catalog job does categories before products (R-CAT-1).
    // Invoices run after the products of the same run, so that their lines find the products'
    // Abaha ids (R-INV-2): the catalog job enqueues them when it is done.
    // A scheduled incremental run mostly finds nothing: one job does every part, in that order
    // (categories, products, customers, invoices), on the catalog queue — one message, one
    // invocation, one report write for the whole run. Its continuations stay on that queue.
    let one_job = trigger == Trigger::Schedule && !full;
    let chained = entities.contains(&Entity::Products) && entities.contains(&Entity::Invoices);
    let mut jobs: BTreeMap<&str, SyncJob> = BTreeMap::new();
    for e in &entities {
        let (queue, chain) = if one_job {
            (Entity::Categories.queue(&svc.settings.queues), false)
        } else if chained && *e == Entity::Invoices {
            (Entity::Products.queue(&svc.settings.queues), true)
        } else {
            (e.queue(&svc.settings.queues), false)
        };
        let job = jobs.entry(queue).or_insert_with(|| SyncJob {
            lease_until: Some(until),
            prepaid,
            scheduled: trigger == Trigger::Schedule,
            home: one_job.then_some(Entity::Categories),
            ..SyncJob::new(shop, &run_id, full)
        });
        if chain {
            job.then.push(*e);
        } else {
            job.entities.push(*e);
        }
    }
    for (queue, job) in jobs {
        if let Err(e) = svc.queue.send(queue, &job.to_value(), None).await {
            tracing::error!(shop, run_id, error = %e, "could not enqueue pull job");
            let _ = svc
                .store
                .set_run_state(shop, &run_id, RunState::Failed, Some(now))
                .await;
            let _ = svc.store.release_lease(shop, RUN_SCOPE, &run_id).await;
            return Err(EngineError::unavailable(
                "The sync could not be queued. Nothing was started; please press Sync again in a minute.",
            ));
        }
    }
    tracing::info!(shop, run_id, ?trigger, full, entities = ?entities, "run started");
    Ok(Started {
        run_id,
        already_running: false,
    })
}

/// R-SYN-6: every pull reads at least one page, so the run's start takes one GET per entity
/// from the shop's hourly budget in one write (instead of one write per pull). Answers the
/// budget window paid in, or None when the budget could not give them (the pulls then ask for
/// their own, and wait if the hour is spent).
async fn prepay_first_pages(
    svc: &Service,
    conn: &Connection,
    n: u32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    use chrono::DurationRound;
    let window = now.duration_trunc(ChronoDuration::hours(1)).ok()?;
    match svc
        .store
        .take(&conn.retailer, window, n, svc.settings.get_budget_per_hour)
        .await
    {
        Ok(store::BudgetAnswer::Granted { .. }) => Some(window),
        Ok(store::BudgetAnswer::Exhausted { .. }) => None,
        Err(e) => {
            tracing::warn!(shop = %conn.shop_id, error = %e, "could not prepay the first pages; the pulls will");
            None
        }
    }
}

/// Manual actions found outside a sync run (an order cancel, a webhook) go to the shop's latest
/// run report, where the owner reads them; a shop with no run yet gets a finished run that
/// carries them.
pub async fn record_manual_actions(
    svc: &Service,
    shop: &str,
    trigger: Trigger,
    actions: &[ManualAction],
) -> Result<(), store::StoreError> {
    if actions.is_empty() {
        return Ok(());
    }
    if let Some(latest) = svc.store.latest_run(shop).await? {
        return svc
            .store
            .append_manual_actions(shop, &latest.run_id, actions)
            .await;
    }
    let now = svc.now();
    let run_id = new_run_id(now);
    let initial = RunReport {
        run_id: run_id.clone(),
        state: RunState::Succeeded,
        trigger: Some(trigger),
        started_at: Some(now),
        finished_at: Some(now),
        manual_actions: actions.to_vec(),
        ..RunReport::default()
    };
    svc.store
        .create_run(shop, &run_id, &initial)
        .await
        .map(|_| ())
}

/// Run ids sort by time, so the newest run of a shop is easy to find and to read in logs.
pub(crate) fn new_run_id(now: DateTime<Utc>) -> String {
    let suffix: u32 = rand::random();
    format!("run-{}-{:08x}", now.format("%Y%m%dT%H%M%S%3fZ"), suffix)
}

/// After an entity ended: if every entity of the run has, the run ends too, with a state that
/// says honestly how it went, and the shop is free for the next run.
pub async fn finish_if_done(
    svc: &Service,
    shop: &str,
    run_id: &str,
) -> Result<(), store::StoreError> {
    let Some(report) = svc.store.get_run(shop, run_id).await? else {
        return Ok(());
    };
    finish_with(svc, shop, run_id, &report).await
}

/// Writes the reports of a job's parts in one write (what ended, and what is running); if that
/// leaves every part of the run ended, the run ends too — known from the write's answer,
/// without reading the run again. `read_at_start` is the run as the job read it when it began:
/// when every other part had ended by then, this job is the run's last, and the same write ends
/// the run (checked by the write: the other parts must still stand as read).
pub async fn report_parts(
    svc: &Service,
    shop: &str,
    run_id: &str,
    parts: &[(Entity, Tally)],
    read_at_start: Option<&RunReport>,
) -> Result<(), store::StoreError> {
    if parts.is_empty() {
        return Ok(());
    }
    let reports: Vec<(mapping::api::Entity, EntityReport)> =
        parts.iter().map(|(e, t)| (*e, t.clone())).collect();
    let end = read_at_start.and_then(|r| last_part_ending(r, parts, svc.now()));
    let report = svc
        .store
        .put_entity_reports(shop, run_id, &reports, end.as_ref())
        .await?;
    if let Some(end) = &end
        && report.state == end.state
    {
        // The lease is left to expire: the next trigger finds its run ended (see `start`).
        tracing::info!(shop, run_id, state = %end.state, "run finished");
        return Ok(());
    }
    finish_with(svc, shop, run_id, &report).await
}

/// The run's end, if `parts` are the last of it: every other part had ended in `read_at_start`.
fn last_part_ending(
    read_at_start: &RunReport,
    parts: &[(Entity, Tally)],
    now: DateTime<Utc>,
) -> Option<store::RunEnd> {
    let mut others = Vec::new();
    let mut states = Vec::new();
    for (entity, e) in &read_at_start.entities {
        if parts.iter().any(|(p, _)| p == entity) {
            continue;
        }
        if !e.state.is_final() {
            return None;
        }
        others.push((*entity, e.state));
        states.push(e.state);
    }
    states.extend(parts.iter().map(|(_, t)| t.state));
    Some(store::RunEnd {
        state: RunState::of_parts(states)?,
        finished_at: now,
        others,
    })
}

async fn finish_with(
    svc: &Service,
    shop: &str,
    run_id: &str,
    report: &RunReport,
) -> Result<(), store::StoreError> {
    let Some(state) = RunState::of_parts(report.entities.values().map(|e| e.state)) else {
        return Ok(());
    };
    svc.store
        .set_run_state(shop, run_id, state, Some(svc.now()))
        .await?;
    // The lease is left to expire: the next trigger finds its run ended (see `start`).
    tracing::info!(shop, run_id, %state, "run finished");
    let seconds = report
        .started_at
        .map(|t| (svc.now() - t).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    crate::metrics::emit(&crate::metrics::run_finished(shop, report, state, seconds));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapping::api::PartState;

    #[test]
    fn r_syn_5_the_job_of_a_runs_last_part_ends_the_run_in_its_report_write() {
        use mapping::api::Entity as E;
        // GIVEN a run read when the invoice job began: every other part had ended
        let part = |state| EntityReport::in_state(state);
        let mut read = RunReport::default();
        read.entities
            .insert(E::Categories, part(PartState::Succeeded));
        read.entities.insert(E::Products, part(PartState::Partial));
        read.entities.insert(E::Customers, part(PartState::Skipped));
        read.entities.insert(E::Invoices, part(PartState::Queued));
        let done = part(PartState::Succeeded);
        let now: DateTime<Utc> = "2026-11-29T09:00:00Z".parse().unwrap();
        // WHEN its part ends THEN its write ends the run, honestly, if the others still stand
        let end = last_part_ending(&read, &[(Entity::Invoices, done.clone())], now).unwrap();
        assert_eq!(end.state, RunState::Partial);
        assert_eq!(end.finished_at, now);
        assert_eq!(end.others.len(), 3);
        assert!(end.others.contains(&(E::Products, PartState::Partial)));
        // AND a job that is not the last (customers still queued when it began) does not
        read.entity_mut(E::Customers).state = PartState::Queued;
        assert!(last_part_ending(&read, &[(Entity::Invoices, done.clone())], now).is_none());
        // AND a part still running never ends the run
        let running = part(PartState::Running);
        assert!(last_part_ending(&read, &[(Entity::Customers, running)], now).is_none());
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id("2026-11-29T09:00:00Z".parse().unwrap());
        let b = new_run_id("2026-11-29T09:00:01Z".parse().unwrap());
        assert!(a < b);
    }
}
