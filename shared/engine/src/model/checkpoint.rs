//! Where a pull stands (R-SYN-2), as the store keeps it between deliveries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::tally::Tally;

/// Where a pull stands, saved after every page (R-SYN-2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    /// When this entity's pull began: the cursor moves here at the end.
    pub started_at: DateTime<Utc>,
    /// The `lastModifiedFrom` of this pull (None: everything).
    pub from: Option<DateTime<Utc>>,
    /// The next `currentItem`.
    pub position: i64,
    /// The list's total as of the page that ended at `position`: a resumed pull compares it with
    /// the total it reads next, so records deleted while it waited still make it step back.
    #[serde(default)]
    pub total: Option<i64>,
    /// Deliveries in a row that failed transiently without reading anything new.
    #[serde(default)]
    pub failed_tries: u32,
    /// No sync of this entity ever finished (no cursor): every record is new to Abaha, so the
    /// ID map is not read before sending (a re-run re-sends, which Abaha answers `unchanged`).
    #[serde(default)]
    pub first_sync: bool,
    pub tally: Tally,
}
