//! The counts of one entity in one run (R-SYN-5).

/// Counts of one entity in one run, as the report shows them (CONTRACTS §1 "Run report"): the
/// typed entity report of `mapping::api` (its `merge` is the one place counts are added, so the
/// pull's in-order apply and its drain on the way out cannot count different fields), under the
/// name the pulls have always used.
pub type Tally = mapping::api::EntityReport;
