//! The service API (CONTRACTS.md §1): the edge that speaks HTTP, over the engine that does not.
//!
//! - [`routes`] — routing, authentication (admin token, shop tokens), the body size limit, and the
//!   order of checks; [`handle`] serves one [`ApiRequest`] and never panics on input.
//! - [`answers`] — per route: the typed input read from the request (`ConnectionBody`,
//!   `SyncRequest`, `AbahaOrder`, …), the engine's use case, its typed answer written as JSON with
//!   the documented status.
//! - [`error`] — [`ApiError`], the documented error shape, and [`status_of`], the one table from
//!   an engine error's contract code to its HTTP status.
//! - [`http`] — [`router`], the one axum router both hosts serve: the `api` Lambda (through
//!   `lambda_http`) and the local stack (on a TCP listener).
//!
//! The dependency points one way: this crate uses `engine`; `engine` cannot name anything here.

pub mod answers;
pub mod body;
pub mod error;
pub mod http;
pub mod request;
pub mod routes;

pub use body::parse_body;
pub use error::{ApiError, status_of};
pub use http::{RoutePath, router};
pub use request::{ApiRequest, ApiResponse};
pub use routes::handle;
