//! The counts of one entity in one run (R-SYN-5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Counts of one entity in one run, as the report shows them (CONTRACTS §1 "Run report").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub state: String,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub skipped: BTreeMap<String, u64>,
    /// KiotViet API calls spent (token calls excluded).
    pub api_calls: u64,
    pub removed_in_kiotviet: u64,
    /// Abaha Sync API calls spent.
    #[serde(default)]
    pub abaha_calls: u64,
    /// Records read from KiotViet.
    #[serde(default)]
    pub read: u64,
    /// Set while the run waits for the KiotViet hourly budget (R-SYN-6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_until: Option<String>,
    /// A sentence for the shop owner when the entity did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Tally {
    pub fn queued() -> Self {
        Tally {
            state: "queued".into(),
            ..Tally::default()
        }
    }

    pub fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }

    /// Adds another tally's counts to this one: a processed page's to the pull's. State,
    /// `waiting_until` and `message` stay this one's. The one place counts are added, so the
    /// pull's in-order apply and its drain on the way out cannot count different fields.
    pub fn merge(&mut self, other: &Tally) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
        for (reason, n) in &other.skipped {
            *self.skipped.entry(reason.clone()).or_default() += n;
        }
        self.api_calls += other.api_calls;
        self.removed_in_kiotviet += other.removed_in_kiotviet;
        self.abaha_calls += other.abaha_calls;
        self.read += other.read;
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({"state": self.state}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_syn_5_merge_adds_every_count_and_keeps_the_state_and_message() {
        let mut pull = Tally {
            state: "running".into(),
            created: 1,
            updated: 2,
            unchanged: 3,
            failed: 4,
            skipped: BTreeMap::from([("no_phone".to_string(), 5)]),
            api_calls: 6,
            removed_in_kiotviet: 7,
            abaha_calls: 8,
            read: 9,
            waiting_until: None,
            message: Some("mine".into()),
        };
        let page = Tally {
            state: "queued".into(),
            created: 10,
            updated: 20,
            unchanged: 30,
            failed: 40,
            skipped: BTreeMap::from([("no_phone".to_string(), 1), ("cancelled".to_string(), 2)]),
            api_calls: 60,
            removed_in_kiotviet: 70,
            abaha_calls: 80,
            read: 90,
            waiting_until: Some("later".into()),
            message: Some("theirs".into()),
        };
        pull.merge(&page);
        assert_eq!(
            pull,
            Tally {
                state: "running".into(),
                created: 11,
                updated: 22,
                unchanged: 33,
                failed: 44,
                skipped: BTreeMap::from([
                    ("no_phone".to_string(), 6),
                    ("cancelled".to_string(), 2)
                ]),
                api_calls: 66,
                removed_in_kiotviet: 77,
                abaha_calls: 88,
                read: 99,
                waiting_until: None,
                message: Some("mine".into()),
            }
        );
    }

    #[test]
    fn merging_an_empty_tally_changes_nothing() {
        let mut t = Tally::queued();
        t.skip("no_phone");
        let before = t.clone();
        t.merge(&Tally::default());
        assert_eq!(t, before);
    }
}
