//! Where a pull stands (R-SYN-2), as the store keeps it between deliveries: the store's typed
//! [`store::Checkpoint`], whose tally is the run report's `EntityReport`.

pub use store::Checkpoint;
