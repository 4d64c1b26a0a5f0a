//! The rules of a run as a whole (R-SYN-3, R-SYN-5).

/// The lease scope that marks a shop's active run.
pub const RUN_SCOPE: &str = "run";

/// Entity states after which an entity does no more work in this run.
pub fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "partial" | "failed" | "skipped")
}

/// succeeded: every entity succeeded (or was skipped); failed: nothing succeeded; else partial.
pub fn run_state(entity_states: &[&str]) -> &'static str {
    let ok = entity_states
        .iter()
        .filter(|s| matches!(**s, "succeeded" | "skipped"))
        .count();
    let failed = entity_states.iter().filter(|s| **s == "failed").count();
    if ok == entity_states.len() {
        "succeeded"
    } else if failed == entity_states.len() {
        "failed"
    } else {
        "partial"
    }
}
