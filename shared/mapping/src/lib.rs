//! The one shared, pure crate: wire types of KiotViet FnB, the Abaha Sync API and the service API,
//! datetime handling, and every seed rule that can be a function (R-CAT-*, R-PRD-*, R-CUS-*,
//! R-INV-*, R-ORD-*, R-SYN-4 hashing). No I/O, no async: everything here is unit-testable.

pub mod abaha;
pub mod api;
pub mod kiotviet;
pub mod time;

mod de;
