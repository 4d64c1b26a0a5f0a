//! Run reports as both adapters keep them: the one rule for capped lists and the one way a
//! stored run becomes the [`RunReport`] the API shows. The in-memory store keeps a
//! [`RunReport`] and changes it with these functions; DynamoDB keeps a run as attributes
//! (`dynamo::runs`) and puts them back together with [`assemble`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mapping::api::{Entity, EntityReport, ManualAction, RunError, RunReport, RunState};

use crate::ports::RUN_LIST_CAP;

/// Appends what fits under [`RUN_LIST_CAP`] and counts the rest in `dropped`.
pub fn append_capped<T: Clone>(list: &mut Vec<T>, dropped: &mut u64, entries: &[T]) {
    let fits = RUN_LIST_CAP.saturating_sub(list.len()).min(entries.len());
    list.extend_from_slice(&entries[..fits]);
    *dropped += (entries.len() - fits) as u64;
}

/// A run as the DynamoDB item holds it, section by section.
#[derive(Debug, Clone, Default)]
pub struct StoredRun {
    /// The initial report without its sections (`run_id`, `trigger`, `full`, `started_at`).
    pub base: RunReport,
    /// The `state` attribute, once a write set it (else the base's).
    pub state: Option<RunState>,
    pub finished_at: Option<DateTime<Utc>>,
    pub entities: BTreeMap<Entity, EntityReport>,
    pub manual_actions: Vec<ManualAction>,
    pub errors: Vec<RunError>,
    pub manual_actions_dropped: u64,
    pub errors_dropped: u64,
}

/// The report of a stored run: its base, with the later writes laid over it.
pub fn assemble(run_id: &str, stored: StoredRun) -> RunReport {
    let StoredRun {
        base,
        state,
        finished_at,
        entities,
        manual_actions,
        errors,
        manual_actions_dropped,
        errors_dropped,
    } = stored;
    RunReport {
        run_id: run_id.to_owned(),
        state: state.unwrap_or(base.state),
        finished_at: finished_at.or(base.finished_at),
        entities,
        manual_actions,
        errors,
        manual_actions_dropped,
        errors_dropped,
        ..base
    }
}

/// The initial report split into what the item stores: the base without its sections, and
/// the sections, capped.
pub fn split_initial(initial: &RunReport) -> StoredRun {
    let mut stored = StoredRun {
        base: RunReport {
            entities: BTreeMap::new(),
            manual_actions: Vec::new(),
            errors: Vec::new(),
            manual_actions_dropped: 0,
            errors_dropped: 0,
            ..initial.clone()
        },
        entities: initial.entities.clone(),
        manual_actions_dropped: initial.manual_actions_dropped,
        errors_dropped: initial.errors_dropped,
        ..StoredRun::default()
    };
    append_capped(
        &mut stored.manual_actions,
        &mut stored.manual_actions_dropped,
        &initial.manual_actions,
    );
    append_capped(
        &mut stored.errors,
        &mut stored.errors_dropped,
        &initial.errors,
    );
    stored
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use mapping::api::{PartState, Trigger};

    use super::*;

    fn initial() -> RunReport {
        RunReport::queued(
            "run-1",
            Trigger::Api,
            true,
            "2026-12-05T10:00:00Z".parse().unwrap(),
            [Entity::Products, Entity::Customers],
        )
    }

    #[test]
    fn a_stored_run_is_assembled_back_into_its_initial_report() {
        let stored = split_initial(&initial());
        assert!(stored.base.entities.is_empty());
        assert_eq!(assemble("run-1", stored), initial());
    }

    #[test]
    fn later_writes_are_laid_over_the_base() {
        let mut stored = split_initial(&initial());
        stored.state = Some(RunState::Partial);
        stored.finished_at = Some("2026-12-05T10:01:00Z".parse().unwrap());
        stored.entities.get_mut(&Entity::Products).unwrap().state = PartState::Failed;
        let report = assemble("run-1", stored);
        assert_eq!(report.state, RunState::Partial);
        assert_eq!(report.duration_ms(), Some(60_000));
        assert_eq!(report.entities[&Entity::Products].state, PartState::Failed);
        assert!(report.full);
        assert_eq!(report.trigger, Some(Trigger::Api));
    }

    #[test]
    fn lists_keep_the_cap_and_count_what_they_turn_away() {
        let mut list = vec![0u8; RUN_LIST_CAP - 2];
        let mut dropped = 0;
        append_capped(&mut list, &mut dropped, &[1, 2, 3, 4, 5]);
        assert_eq!((list.len(), dropped), (RUN_LIST_CAP, 3));
        append_capped(&mut list, &mut dropped, &[6]);
        assert_eq!((list.len(), dropped), (RUN_LIST_CAP, 4));
        append_capped(&mut list, &mut dropped, &[]);
        assert_eq!(dropped, 4);
    }

    #[test]
    fn an_initial_report_over_the_cap_is_capped_when_split() {
        let mut report = initial();
        report.errors = (0..RUN_LIST_CAP + 7)
            .map(|i| RunError::new("products", Some(i as i64), "bad"))
            .collect();
        let stored = split_initial(&report);
        assert_eq!(stored.errors.len(), RUN_LIST_CAP);
        assert_eq!(stored.errors_dropped, 7);
    }
}
