//! Stand-ins for the systems this service talks to but does not own, served over real HTTP on
//! 127.0.0.1: a KiotViet FnB simulator ([`kiotviet`]) and an Abaha Sync API sandbox ([`abaha`]).
//!
//! Used in-process by end-to-end tests (ephemeral ports) and as the `sandbox` binary by the local
//! stack and the demo. Deliberately independent of the service's crates: it writes its own JSON,
//! so a mistake in our shared types cannot hide behind the same mistake here.

pub mod abaha;
mod common;
pub mod kiotviet;

pub use common::{Faults, RouteCounts};
