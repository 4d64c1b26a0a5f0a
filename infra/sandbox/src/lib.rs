//! Stand-ins for the systems this service talks to but does not own, served over real HTTP on
//! 127.0.0.1: a KiotViet FnB simulator ([`kiotviet`]) and an Abaha Sync API sandbox ([`abaha`]).
//!
//! Used in-process by end-to-end tests (ephemeral ports) and as the `sandbox` binary by the local
//! stack and the demo. Deliberately independent of the service's crates: it writes its own JSON,
//! so a mistake in our shared types cannot hide behind the same mistake here.
//!
//! # KiotViet FnB simulator
//!
//! API (`Authorization: Bearer`, `Retailer` header): `GET /branches`, `GET /categories`
//! (`hierachicalData`), `GET /categories/{id}` (wrapped in `data`), `GET /products`,
//! `GET /products/{id}`, `GET /products/code/{code}` (bare), `GET|POST /customers`,
//! `GET|PUT|DELETE /customers/{id}`, `GET /customers/code/{code}`, `GET /invoices`,
//! `GET /invoices/{id}`, `GET /invoices/code/{code}`, `POST|GET /orders`, `GET /orders/{id}`,
//! `GET /orders/code/{code}`, `GET|POST /webhooks`, `GET|DELETE /webhooks/{id}`.
//! Token: `POST /identity/connect/token` and `POST /connect/token`.
//!
//! Admin (no auth, no faults, not counted): `POST /_sandbox/reset`, `GET /_sandbox/stats`,
//! `GET|POST /_sandbox/faults`, `POST /_sandbox/limits` `{"get_limit_per_hour": n|null}`,
//! `POST /_sandbox/tokens/expire`, `GET|POST /_sandbox/clock` (`{"now": RFC 3339}` freezes,
//! `{"advance_secs": n}`, `{"running": true}`), `GET|POST /_sandbox/settings`
//! (`{"delivery_enabled": bool}`), `POST /_sandbox/{categories|products|customers}`,
//! `PATCH|PUT|DELETE /_sandbox/{categories|products|customers}/{id}` (camelCase bodies as in
//! [`kiotviet::NewProduct`] etc.), `POST /_sandbox/invoices`,
//! `POST /_sandbox/invoices/{id}/status` `{"status": 2}`, `POST /_sandbox/orders/{id}/invoice`
//! ([`kiotviet::InvoiceEdits`]), `GET /_sandbox/orders` (created through the API, with
//! `_request`), `GET /_sandbox/customers` (created through the API),
//! `GET /_sandbox/webhooks/deliveries`. Admin errors: `{"error":{"code","message","details"}}`.
//!
//! Choices where the reference is unconfirmed (a real shop may differ):
//! - Errors are ServiceStack-shaped `{"responseStatus":{"errorCode","message"}}`: 401
//!   `TokenException` (bad, missing or expired token; `WWW-Authenticate: Bearer`); 400
//!   `RetailerNotFound` `"Không tìm thấy cửa hàng {name}"` (missing or wrong `Retailer`); 400
//!   `KvValidateException` for business rules (e.g. "Số điện thoại đã tồn tại", the delivery
//!   setting message, unknown branch/product/customer in an order); 400 `ArgumentException` for
//!   bad query values (unparsable `lastModifiedFrom`, unknown `orderBy`, non-numeric `pageSize`);
//!   400 `SerializationException` for bad JSON; 404 `NotFound` for unknown ids and routes; 429
//!   `TooManyRequests` with `Retry-After` (quota or injected); injected 500 as JSON, 502/503 as an
//!   HTML gateway page.
//! - Token errors are OAuth-shaped with 400: `invalid_client`, `invalid_scope` (any scope other
//!   than `PublicApi.Access.FNB`; none at all is accepted), `unsupported_grant_type`,
//!   `invalid_request` (not form-encoded). Injected faults do not apply to the token endpoint.
//! - The GET quota is a sliding hour on the simulator clock, per retailer, counting admitted GETs.
//! - Default order is by id ascending; `orderBy` names outside each entity's list are refused.
//!   `pageSize` ≤ 0 means 20. A bare date in a query is midnight; a value with an offset is
//!   converted to Vietnam time; `toPurchaseDate` is inclusive.
//! - Search parameters (`contactNumber`, `name`, `code`, `email`) match anywhere, ignoring case.
//! - `categoryId` filters the direct category only. Deleting a category that still has
//!   subcategories or products is refused.
//! - Invoices from an order carry `orderCode` in lists too (switch off with
//!   [`kiotviet::KvConfig::invoice_list_order_code`]); totals include the delivery price.
//! - `POST /orders` answers 200 with the order (status 1 "Phiếu tạm"); it also checks
//!   `CustomerId`, quantities > 0 and that there is at least one line; `Discount`/`Description`
//!   (retail-only) are stored; retail's `orderDelivery` block is ignored (FnB reads
//!   `DeliveryDetail`); a missing `DeliveryCode` becomes `GH` + the order number.
//!   `GET /orders*` and the order statuses (retail's 1–5) are unconfirmed on FnB.
//! - Webhooks: only the five FnB types are accepted; a second hook with the same type and URL is
//!   refused; updates are sent in the `Notifications` envelope, deletes as the bare
//!   `{"RemoveId":[…]}` form.
//!
//! # Abaha Sync API sandbox
//!
//! `POST /v1/shops/{shop_id}/{categories|products|customers|orders}:upsert`; admin:
//! `GET /_sandbox/shops/{shop}/{kind}`, `POST /_sandbox/shops/{shop}` (register a shop),
//! `POST /_sandbox/shops/{shop}/products/{kiotviet_id}/visibility` `{"visible": bool}`,
//! `GET /_sandbox/stats`, `GET|POST /_sandbox/faults`, `POST /_sandbox/reset`. See [`abaha`] for
//! its error codes.

// Handlers and their helpers answer `Result<Response, Response>`: the error is the finished HTTP
// answer, built once on a cold path, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod abaha;
mod common;
pub mod kiotviet;

pub use common::{Faults, RouteCounts};
