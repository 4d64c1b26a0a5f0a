//! The rules of a run as a whole (R-SYN-3, R-SYN-5). How a run ends from its parts' states is
//! `mapping::api::RunState::of_parts`; when a part is final, `PartState::is_final`.

/// The lease scope that marks a shop's active run.
pub const RUN_SCOPE: &str = "run";
