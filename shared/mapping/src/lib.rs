//! The one shared, pure crate: wire types of KiotViet FnB, the Abaha Sync API and the service API,
//! datetime handling, and every seed rule that can be a function (R-CAT-*, R-PRD-*, R-CUS-*,
//! R-INV-*, R-ORD-*, R-SYN-4 hashing). No I/O, no async: everything here is unit-testable.
//!
//! Wire types: [`kiotviet`], [`abaha`], [`api`]; time: [`time`]; rules: [`catalog`],
//! [`customers`], [`invoices`], [`orders`], [`hash`].

pub mod abaha;
pub mod api;
pub mod kiotviet;
pub mod time;

pub mod catalog;
pub mod customers;
pub mod hash;
pub mod invoices;
pub mod orders;

mod de;
