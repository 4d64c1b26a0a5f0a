//! A port for tests: hearing each step of an order push. It lives with the service that carries
//! it, so the push depends on the service and never the other way round.

use async_trait::async_trait;

/// The steps of a push between which a process can die; a [`PushObserver`] hears each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushStep {
    /// The claim is ours.
    Claimed,
    /// The attempt (our reference) is recorded; `POST /orders` is next.
    AttemptRecorded,
    /// KiotViet answered the POST with the order (or an earlier attempt's order was found).
    Created,
    /// The links for the invoice pull are written.
    Linked,
    /// The record is completed: repeats replay from now on.
    Completed,
}

/// Hears every step of every order push. The service has none; the model-checking test uses
/// one to pause pushes (interleavings) and to end them where they stand (crashes).
#[async_trait]
pub trait PushObserver: Send + Sync {
    async fn at(&self, order_id: &str, step: PushStep);
}
