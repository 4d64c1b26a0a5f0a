//! Abaha → KiotViet FnB pushes: orders (R-ORD-*) and customers (R-CUS-2, R-CUS-3).

pub mod customers;
pub mod orders;
