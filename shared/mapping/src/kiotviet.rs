//! KiotViet FnB wire types (reference/kiotviet-fnb-api.md §4–§5, §7–§8): list envelopes, records,
//! the order-create body and answer, the customer write body, token and error bodies, webhooks.
//!
//! Reading is deliberately tolerant, because the FnB API is only partly documented: every non-key
//! field is optional, `null` lists are empty, ids and amounts may be numbers or numeric strings,
//! and the known spelling variants are aliases. Records of a page stay `serde_json::Value` until
//! [`Page::decode`], so one bad record is skipped and named instead of failing the page.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::de;
use crate::time::kv_datetime_opt;

// ---------------------------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------------------------

/// One page of a list endpoint: `{total, pageSize, data, removedIds|removeId|removeIds, timestamp}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawPage")]
pub struct Page {
    pub total: Option<i64>,
    pub page_size: Option<i64>,
    /// Records, undecoded (see [`Page::decode`]). Missing or `null` ⇒ empty.
    pub data: Vec<Value>,
    /// Ids removed since `lastModifiedFrom` (only with `includeRemoveIds=true`).
    pub removed_ids: Vec<i64>,
    #[serde(with = "kv_datetime_opt")]
    pub timestamp: Option<DateTime<FixedOffset>>,
}

/// The envelope as sent. The removed-ids key differs per endpoint (§4), so each spelling is read
/// on its own and merged, which also survives an answer that carries two of them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPage {
    #[serde(default, deserialize_with = "de::opt_id")]
    total: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_id")]
    page_size: Option<i64>,
    #[serde(default, deserialize_with = "de::null_default")]
    data: Vec<Value>,
    #[serde(default, deserialize_with = "de::id_vec")]
    removed_ids: Vec<i64>,
    #[serde(default, deserialize_with = "de::id_vec")]
    remove_id: Vec<i64>,
    #[serde(default, deserialize_with = "de::id_vec")]
    remove_ids: Vec<i64>,
    #[serde(default, with = "kv_datetime_opt")]
    timestamp: Option<DateTime<FixedOffset>>,
}

impl From<RawPage> for Page {
    fn from(raw: RawPage) -> Self {
        let mut removed_ids = raw.removed_ids;
        for id in raw.remove_id.into_iter().chain(raw.remove_ids) {
            if !removed_ids.contains(&id) {
                removed_ids.push(id);
            }
        }
        Page {
            total: raw.total,
            page_size: raw.page_size,
            data: raw.data,
            removed_ids,
            timestamp: raw.timestamp,
        }
    }
}

impl Page {
    /// Decodes every record on its own: a record that does not fit `T` becomes an error naming
    /// its id (when visible) and the JSON path, and the others still decode.
    pub fn decode<T: DeserializeOwned>(&self) -> Vec<Result<T, DecodeError>> {
        self.data.iter().map(decode_record).collect()
    }

    /// Number of records on this page (for the pager's `currentItem += n`).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A record that could not be decoded: which one, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    /// The record's id (`id`, `categoryId`, `Id`) when it could be read.
    pub id: Option<i64>,
    /// JSON path of the failing field inside the record (`.` = the record itself).
    pub path: String,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "record {id}: ")?,
            None => write!(f, "record without a readable id: ")?,
        }
        write!(f, "at {}: {}", self.path, self.message)
    }
}

/// Decodes one record with the failing path and the record's id in the error.
pub fn decode_record<T: DeserializeOwned>(v: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| DecodeError {
        id: record_id(v),
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// The id of a raw record, if it has a readable one.
pub fn record_id(v: &Value) -> Option<i64> {
    [
        "id",
        "categoryId",
        "Id",
        "CategoryId",
        "productId",
        "ProductId",
    ]
    .iter()
    .find_map(|k| v.get(*k).and_then(value_as_id))
}

/// A JSON number or digit string as an id.
pub fn value_as_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A detail answer: KiotViet returns either `{"data": T}` or a bare `T` (§5.2, §5.3, §5.4).
#[derive(Debug, Clone, PartialEq)]
pub struct Detail<T>(pub T);

impl<T> Detail<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Detail<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        decode_detail(&v)
            .map(Detail)
            .map_err(serde::de::Error::custom)
    }
}

/// Decodes a detail answer (wrapped or bare), naming the failing path.
pub fn decode_detail<T: DeserializeOwned>(v: &Value) -> Result<T, DecodeError> {
    // Wrapped only when `data` holds an object and the outer value has no id of its own: no
    // record type has a `data` field, so this cannot misread a bare record.
    match v.get("data") {
        Some(inner @ Value::Object(_)) if record_id(v).is_none() => decode_record(inner),
        _ => decode_record(v),
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// `GET /branches` record (§5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Branch {
    #[serde(deserialize_with = "de::id")]
    pub id: i64,
    #[serde(default)]
    pub branch_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub branch_code: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub location_name: Option<String>,
    #[serde(default)]
    pub ward_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub contact_number: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub retailer_id: Option<i64>,
    #[serde(default, with = "kv_datetime_opt")]
    pub modified_date: Option<DateTime<FixedOffset>>,
    #[serde(default, with = "kv_datetime_opt")]
    pub created_date: Option<DateTime<FixedOffset>>,
}

/// `GET /categories` record (§5.2); `children` only in tree mode (`hierachicalData=true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    #[serde(deserialize_with = "de::id")]
    pub category_id: i64,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub parent_id: Option<i64>,
    #[serde(default)]
    pub category_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub retailer_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub rank: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub has_child: Option<bool>,
    #[serde(default, with = "kv_datetime_opt")]
    pub modified_date: Option<DateTime<FixedOffset>>,
    #[serde(default, with = "kv_datetime_opt")]
    pub created_date: Option<DateTime<FixedOffset>>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub children: Vec<Category>,
}

/// `GET /products` record (§5.3). Each unit and each variant is its own product id (§9.9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    #[serde(deserialize_with = "de::id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub retailer_id: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub category_id: Option<i64>,
    #[serde(default)]
    pub category_name: Option<String>,
    /// "Sold directly at the POS" — not the in-business status (§9.10).
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub allows_sale: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub product_type: Option<i32>,
    #[serde(default, rename = "type", deserialize_with = "de::opt_i32")]
    pub kind: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub is_topping: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub is_processed_goods: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub is_time_type: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub is_time_services: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub is_reward_point: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub order_template: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub has_variants: Option<bool>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub master_unit_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub master_product_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub conversion_value: Option<f64>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub units: Vec<Unit>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub images: Vec<ProductImage>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub inventories: Vec<Inventory>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub toppings: Vec<Topping>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub formulas: Vec<Formula>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub base_price: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub weight: Option<f64>,
    #[serde(default, with = "kv_datetime_opt")]
    pub modified_date: Option<DateTime<FixedOffset>>,
    #[serde(default, with = "kv_datetime_opt")]
    pub created_date: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    #[serde(default, alias = "productid", deserialize_with = "de::opt_id")]
    pub product_id: Option<i64>,
    #[serde(default)]
    pub attribute_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub attribute_value: Option<String>,
}

/// Another unit of the same goods; it is its own product id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    #[serde(deserialize_with = "de::id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub conversion_value: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub base_price: Option<f64>,
}

/// Documented as `{"Image": url}`, observed as a plain URL string (§9.8): both are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProductImage {
    Url(String),
    Object(ImageObject),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageObject {
    #[serde(rename = "Image", alias = "image", alias = "url", alias = "Url")]
    pub image: String,
}

impl ProductImage {
    pub fn url(&self) -> &str {
        match self {
            ProductImage::Url(url) => url,
            ProductImage::Object(o) => &o.image,
        }
    }
}

/// Stock of one product in one branch (`includeInventory=true`); also the `stock.update` webhook
/// record once its keys are camel-cased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    #[serde(default, alias = "productid", deserialize_with = "de::opt_id")]
    pub product_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub product_code: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub branch_id: Option<i64>,
    #[serde(default)]
    pub branch_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub on_hand: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub cost: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub reserved: Option<f64>,
}

/// A topping that may be added to this product (FnB only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topping {
    #[serde(deserialize_with = "de::id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub retailer_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub category_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub base_price: Option<f64>,
}

/// A recipe component (FnB only). Read so that it does not fail decoding; not synced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Formula {
    #[serde(default, deserialize_with = "de::opt_id")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub category_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub base_price: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub quantity: Option<f64>,
}

/// `GET /customers` record, and the answer of `POST`/`PUT /customers` (§5.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    #[serde(deserialize_with = "de::id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// true = male, false = female (retail doc).
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub gender: Option<bool>,
    #[serde(default, with = "kv_datetime_opt")]
    pub birth_date: Option<DateTime<FixedOffset>>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub contact_number: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub location_name: Option<String>,
    #[serde(default)]
    pub ward_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    /// FnB code says `comment`, the retail doc and webhooks `comments` (§9.12).
    #[serde(default, alias = "comments")]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub tax_code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub retailer_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub branch_id: Option<i64>,
    #[serde(default, rename = "type", deserialize_with = "de::opt_i32")]
    pub kind: Option<i32>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub debt: Option<f64>,
    #[serde(default, with = "kv_datetime_opt")]
    pub modified_date: Option<DateTime<FixedOffset>>,
    #[serde(default, with = "kv_datetime_opt")]
    pub created_date: Option<DateTime<FixedOffset>>,
}

/// `GET /invoices` record (§5.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    #[serde(deserialize_with = "de::id")]
    pub id: i64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub uuid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    /// Link back to the order the invoice was made from (detail answers; may be absent in lists).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub order_code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub order_id: Option<i64>,
    #[serde(default, with = "kv_datetime_opt")]
    pub purchase_date: Option<DateTime<FixedOffset>>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub branch_id: Option<i64>,
    #[serde(default)]
    pub branch_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub sold_by_id: Option<i64>,
    #[serde(default)]
    pub sold_by_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub customer_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_code: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    /// Amount due.
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub total: Option<f64>,
    /// Amount paid.
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub total_payment: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub discount: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub discount_ratio: Option<f64>,
    /// 1 completed, 2 cancelled, 3 in progress, 5 delivery failed (§5.6).
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub status: Option<i32>,
    #[serde(default)]
    pub status_value: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub using_cod: Option<bool>,
    #[serde(default, with = "kv_datetime_opt")]
    pub modified_date: Option<DateTime<FixedOffset>>,
    #[serde(default, with = "kv_datetime_opt")]
    pub created_date: Option<DateTime<FixedOffset>>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub invoice_details: Vec<InvoiceDetail>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub payments: Vec<Payment>,
    #[serde(default)]
    pub invoice_delivery: Option<Value>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub invoice_order_surcharges: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceDetail {
    /// The doc misspells it in places (`poductId`, `productid`, §9.7).
    #[serde(alias = "poductId", alias = "productid", deserialize_with = "de::id")]
    pub product_id: i64,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub product_code: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub quantity: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub price: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub discount: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub discount_ratio: Option<f64>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub sub_total: Option<f64>,
    #[serde(default)]
    pub category_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    #[serde(default, deserialize_with = "de::opt_id")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "de::opt_f64")]
    pub amount: Option<f64>,
    /// `Cash`, `Card`, `Transfer`, `Voucher`, …
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i32")]
    pub status: Option<i32>,
    #[serde(default)]
    pub status_value: Option<String>,
    #[serde(default, with = "kv_datetime_opt")]
    pub trans_date: Option<DateTime<FixedOffset>>,
}

// ---------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------

/// `POST /orders` body (§5.5), PascalCase as F2 writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OrderCreate {
    #[serde(deserialize_with = "de::id")]
    pub branch_id: i64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_id"
    )]
    pub customer_id: Option<i64>,
    /// Order-level note. Left empty on purpose: the order note goes on the first line (R-ORD-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Order-level discount. Retail name (`discount`) [retail-only]; FnB binding unconfirmed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_f64"
    )]
    pub discount: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_detail: Option<DeliveryDetail>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub order_details: Vec<OrderDetail>,
    /// "Other charge" lines. The only documented name is the retail order body's `surchages`
    /// (sic — the misspelling is the field name, like `hierachicalData`); it is cased like the
    /// rest of this PascalCase body because the server binds names case-insensitively (the FnB
    /// doc's PascalCase body only works that way). Unconfirmed on FnB, so never sent empty.
    #[serde(
        rename = "Surchages",
        alias = "surchages",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de::null_default"
    )]
    pub surcharges: Vec<Surcharge>,
}

/// Delivery block of an FnB order (`DeliveryDetail`, retail calls it `orderDelivery`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveryDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ward_name: Option<String>,
    /// Our idempotency reference, so a lost answer can be found again on the POS side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_code: Option<String>,
    /// Vietnam local `YYYY-MM-DDTHH:MM:SS` (R-ORD-4).
    pub expected_delivery: String,
    #[serde(deserialize_with = "de::f64_or_zero", default)]
    pub price: f64,
    /// 3 = not yet delivered, 4 = delivering.
    pub status: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_delivery: Option<PartnerDelivery>,
}

/// Delivery status "not yet delivered" (F2 p.18).
pub const DELIVERY_STATUS_PENDING: i32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartnerDelivery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OrderDetail {
    #[serde(deserialize_with = "de::id")]
    pub product_id: i64,
    #[serde(deserialize_with = "de::f64_or_zero", default)]
    pub price: f64,
    #[serde(deserialize_with = "de::f64_or_zero", default)]
    pub quantity: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Line order, from 1.
    #[serde(default)]
    pub rank: i32,
}

/// One "other charge" line (retail `surchages[]{id, code, price}`), identified by the code the
/// merchant created in KiotViet (Abaha's KV-Surcharge procedure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Surcharge {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_id"
    )]
    pub id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(deserialize_with = "de::f64_or_zero", default)]
    pub price: f64,
}

/// Answer of `POST /orders` (§5.5): camelCase, PascalCase also read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    #[serde(alias = "Id", deserialize_with = "de::id")]
    pub id: i64,
    #[serde(default, alias = "Code", deserialize_with = "de::opt_string")]
    pub code: Option<String>,
    #[serde(default, alias = "PurchaseDate", with = "kv_datetime_opt")]
    pub purchase_date: Option<DateTime<FixedOffset>>,
    #[serde(default, alias = "BranchId", deserialize_with = "de::opt_id")]
    pub branch_id: Option<i64>,
    #[serde(default, alias = "CustomerId", deserialize_with = "de::opt_id")]
    pub customer_id: Option<i64>,
    #[serde(default, alias = "CustomerName")]
    pub customer_name: Option<String>,
    #[serde(default, alias = "Total", deserialize_with = "de::opt_f64")]
    pub total: Option<f64>,
    #[serde(default, alias = "TotalPayment", deserialize_with = "de::opt_f64")]
    pub total_payment: Option<f64>,
    #[serde(default, alias = "Status", deserialize_with = "de::opt_i32")]
    pub status: Option<i32>,
    #[serde(default, alias = "StatusValue")]
    pub status_value: Option<String>,
    #[serde(default, alias = "Description")]
    pub description: Option<String>,
    #[serde(default, alias = "OrderDetails", deserialize_with = "de::null_default")]
    pub order_details: Vec<OrderCreatedDetail>,
    #[serde(
        default,
        alias = "OrderDelivery",
        alias = "deliveryDetail",
        alias = "DeliveryDetail"
    )]
    pub order_delivery: Option<OrderDelivery>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreatedDetail {
    #[serde(default, alias = "Uuid", deserialize_with = "de::opt_string")]
    pub uuid: Option<String>,
    #[serde(
        default,
        alias = "poductId",
        alias = "productid",
        alias = "ProductId",
        deserialize_with = "de::opt_id"
    )]
    pub product_id: Option<i64>,
    #[serde(default, alias = "Price", deserialize_with = "de::opt_f64")]
    pub price: Option<f64>,
    #[serde(default, alias = "Quantity", deserialize_with = "de::opt_f64")]
    pub quantity: Option<f64>,
    #[serde(default, alias = "Note")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDelivery {
    #[serde(default, alias = "Price", deserialize_with = "de::opt_f64")]
    pub price: Option<f64>,
    #[serde(default, alias = "Receiver")]
    pub receiver: Option<String>,
    #[serde(default, alias = "ContactNumber", deserialize_with = "de::opt_string")]
    pub contact_number: Option<String>,
    #[serde(default, alias = "Address")]
    pub address: Option<String>,
    #[serde(default, alias = "LocationName")]
    pub location_name: Option<String>,
    #[serde(default, alias = "WardName")]
    pub ward_name: Option<String>,
    #[serde(default, alias = "DeliveryCode", deserialize_with = "de::opt_string")]
    pub delivery_code: Option<String>,
    #[serde(default, alias = "ExpectedDelivery", with = "kv_datetime_opt")]
    pub expected_delivery: Option<DateTime<FixedOffset>>,
    #[serde(default, alias = "Status", deserialize_with = "de::opt_i32")]
    pub status: Option<i32>,
}

/// `POST /customers` and `PUT /customers/{id}` body (§5.4), camelCase; `None` is not sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerWrite {
    /// Omitted on create so that KiotViet generates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub name: String,
    /// true = male, false = female.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<bool>,
    /// Vietnam local `YYYY-MM-DDTHH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    pub contact_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Token and errors
// ---------------------------------------------------------------------------------------------

/// OAuth client-credentials answer (§2).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default, deserialize_with = "de::opt_id")]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl fmt::Debug for TokenResponse {
    // The token grants access to the shop's data: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What can be read from a KiotViet error body (§7): ServiceStack `responseStatus` in either
/// casing, a bare `message`, or an OAuth error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    pub error_code: Option<String>,
    pub message: Option<String>,
}

impl ErrorBody {
    pub fn from_value(v: &Value) -> Self {
        ErrorBody {
            error_code: Self::error_code(v),
            message: Self::message(v),
        }
    }

    /// The human message: `responseStatus.message` / `ResponseStatus.Message`, then `message` /
    /// `Message`, then OAuth `error_description`, then `error`.
    pub fn message(v: &Value) -> Option<String> {
        let status = get_ci(v, "responseStatus");
        status
            .and_then(|s| text(get_ci(s, "message")))
            .or_else(|| text(get_ci(v, "message")))
            .or_else(|| text(get_ci(v, "error_description")))
            .or_else(|| text(get_ci(v, "error")))
            .or_else(|| {
                // Validation failures may carry only the per-field list.
                status.and_then(|s| get_ci(s, "errors")).and_then(|errs| {
                    let msgs: Vec<String> = errs
                        .as_array()?
                        .iter()
                        .filter_map(|e| text(get_ci(e, "message")))
                        .collect();
                    (!msgs.is_empty()).then(|| msgs.join("; "))
                })
            })
    }

    /// The machine code: `responseStatus.errorCode` (either casing), `errorCode`, OAuth `error`.
    pub fn error_code(v: &Value) -> Option<String> {
        get_ci(v, "responseStatus")
            .and_then(|s| text(get_ci(s, "errorCode")))
            .or_else(|| text(get_ci(v, "errorCode")))
            .or_else(|| text(get_ci(v, "error")))
    }
}

/// Case-insensitive object lookup (exact match first).
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks (§5.7)
// ---------------------------------------------------------------------------------------------

/// `{"Id", "Attempt", "Notifications": [{"Action", "Data": [...]}]}` — PascalCase.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookEnvelope {
    /// Delivery id: retries of one event share it (dedupe key).
    #[serde(default, alias = "id", deserialize_with = "de::opt_string")]
    pub id: Option<String>,
    #[serde(default, alias = "attempt", deserialize_with = "de::opt_id")]
    pub attempt: Option<i64>,
    #[serde(
        default,
        alias = "notifications",
        deserialize_with = "de::null_default"
    )]
    pub notifications: Vec<Notification>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Notification {
    #[serde(default, alias = "action")]
    pub action: Option<String>,
    #[serde(default, alias = "data", deserialize_with = "de::null_default")]
    pub data: Vec<Value>,
}

/// The documented bare delete form `{"RemoveId": [1, 2, 3]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WebhookRemoval {
    #[serde(
        rename = "RemoveId",
        alias = "removeId",
        alias = "RemoveIds",
        alias = "removeIds",
        alias = "removedIds",
        alias = "RemovedIds",
        deserialize_with = "de::id_vec"
    )]
    pub remove_id: Vec<i64>,
}

/// Either webhook body form.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookPayload {
    Envelope(WebhookEnvelope),
    Removal(WebhookRemoval),
}

impl WebhookPayload {
    /// Reads a webhook body; the delete form is recognised by its `RemoveId` key.
    pub fn from_value(v: &Value) -> Result<Self, DecodeError> {
        let is_removal = v.as_object().is_some_and(|o| {
            o.keys().any(|k| {
                let k = k.to_ascii_lowercase();
                k == "removeid" || k == "removeids" || k == "removedids"
            })
        }) && get_ci(v, "notifications").is_none();
        if is_removal {
            decode_record(v).map(WebhookPayload::Removal)
        } else {
            decode_record(v).map(WebhookPayload::Envelope)
        }
    }
}

/// The webhook events FnB sends (§5.7); other names are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    CustomerUpdate,
    CustomerDelete,
    ProductUpdate,
    ProductDelete,
    StockUpdate,
    Other(String),
}

impl Notification {
    pub fn event(&self) -> WebhookEvent {
        let action = self.action.as_deref().unwrap_or("").trim();
        match action.to_ascii_lowercase().as_str() {
            "customer.update" => WebhookEvent::CustomerUpdate,
            "customer.delete" => WebhookEvent::CustomerDelete,
            "product.update" => WebhookEvent::ProductUpdate,
            "product.delete" => WebhookEvent::ProductDelete,
            "stock.update" => WebhookEvent::StockUpdate,
            _ => WebhookEvent::Other(action.to_owned()),
        }
    }

    /// Decodes the PascalCase records as the REST type `T` (`Product`, `Customer`, `Inventory`):
    /// keys are camel-cased first, so one type reads both the list API and the webhook.
    pub fn decode<T: DeserializeOwned>(&self) -> Vec<Result<T, DecodeError>> {
        self.data
            .iter()
            .map(|v| decode_record(&camel_case_keys(v)))
            .collect()
    }

    /// Ids named by the records (delete events may carry bare ids or objects with `Id`).
    pub fn ids(&self) -> Vec<i64> {
        self.data
            .iter()
            .filter_map(|v| value_as_id(v).or_else(|| record_id(v)))
            .collect()
    }
}

/// Lower-cases the first letter of every object key, recursively (`MasterUnitId` →
/// `masterUnitId`), turning a PascalCase webhook record into the camelCase REST shape.
pub fn camel_case_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut chars = k.chars();
                    let key = match chars.next() {
                        Some(first) => first.to_lowercase().chain(chars).collect(),
                        None => String::new(),
                    };
                    (key, camel_case_keys(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camel_case_keys).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_reads_every_removed_ids_spelling_and_a_missing_data() {
        let p: Page =
            serde_json::from_value(json!({"removeId": [1, "2"], "removedIds": [3]})).unwrap();
        assert_eq!(p.removed_ids, vec![3, 1, 2]);
        assert!(p.data.is_empty());
        let p: Page =
            serde_json::from_value(json!({"data": null, "removeIds": null, "total": "5"})).unwrap();
        assert_eq!(p.total, Some(5));
        assert!(p.removed_ids.is_empty());
    }

    #[test]
    fn one_bad_record_is_named_and_the_rest_decode() {
        let p: Page = serde_json::from_value(json!({
            "data": [
                {"id": 1, "name": "ok"},
                {"id": 2, "basePrice": "abc"},
                {"name": "no id"}
            ]
        }))
        .unwrap();
        let out = p.decode::<Product>();
        assert!(out[0].is_ok());
        let e = out[1].as_ref().unwrap_err();
        assert_eq!(e.id, Some(2));
        assert_eq!(e.path, "basePrice");
        assert!(e.to_string().starts_with("record 2: at basePrice"));
        assert_eq!(out[2].as_ref().unwrap_err().id, None);
    }

    #[test]
    fn detail_reads_wrapped_and_bare() {
        let a: Detail<Customer> = serde_json::from_value(json!({"data": {"id": 7}})).unwrap();
        let b: Detail<Customer> = serde_json::from_value(json!({"id": 7})).unwrap();
        assert_eq!(a.into_inner().id, 7);
        assert_eq!(b.into_inner().id, 7);
    }

    #[test]
    fn images_are_urls_or_image_objects() {
        let p: Product = serde_json::from_value(json!({
            "id": 1,
            "images": ["https://a/1.jpg", {"Image": "https://a/2.jpg"}, {"image": "https://a/3.jpg"}]
        }))
        .unwrap();
        let urls: Vec<&str> = p.images.iter().map(ProductImage::url).collect();
        assert_eq!(
            urls,
            ["https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg"]
        );
    }

    #[test]
    fn misspelled_and_variant_keys_are_read() {
        let d: InvoiceDetail = serde_json::from_value(json!({"poductId": 5})).unwrap();
        assert_eq!(d.product_id, 5);
        let d: InvoiceDetail = serde_json::from_value(json!({"productid": "6"})).unwrap();
        assert_eq!(d.product_id, 6);
        let c: Customer = serde_json::from_value(json!({"id": 1, "comments": "x"})).unwrap();
        assert_eq!(c.comment.as_deref(), Some("x"));
        let c: Category = serde_json::from_value(json!({"categoryId": 1, "hasChild": 1})).unwrap();
        assert_eq!(c.has_child, Some(true));
    }

    #[test]
    fn order_create_serializes_pascal_case_and_skips_what_is_unset() {
        let body = OrderCreate {
            branch_id: 1,
            customer_id: None,
            description: None,
            discount: None,
            delivery_detail: None,
            order_details: vec![OrderDetail {
                product_id: 5,
                price: 35000.0,
                quantity: 2.0,
                note: None,
                rank: 1,
            }],
            surcharges: vec![],
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            json!({"BranchId": 1, "OrderDetails": [{"ProductId": 5, "Price": 35000.0, "Quantity": 2.0, "Rank": 1}]})
        );
    }

    #[test]
    fn error_messages_are_found_in_every_known_shape() {
        let cases = [
            (
                json!({"responseStatus": {"errorCode": "E1", "message": "m1"}}),
                "m1",
                Some("E1"),
            ),
            (
                json!({"ResponseStatus": {"ErrorCode": "E2", "Message": "m2"}}),
                "m2",
                Some("E2"),
            ),
            (json!({"message": "m3"}), "m3", None),
            (json!({"Message": "m4"}), "m4", None),
            (
                json!({"error": "invalid_client", "error_description": "bad secret"}),
                "bad secret",
                Some("invalid_client"),
            ),
            (
                json!({"error": "invalid_scope"}),
                "invalid_scope",
                Some("invalid_scope"),
            ),
            (
                json!({"responseStatus": {"errors": [{"message": "a"}, {"message": "b"}]}}),
                "a; b",
                None,
            ),
        ];
        for (v, msg, code) in cases {
            assert_eq!(ErrorBody::message(&v).as_deref(), Some(msg), "{v}");
            assert_eq!(ErrorBody::error_code(&v).as_deref(), code, "{v}");
        }
        assert_eq!(ErrorBody::message(&json!("plain")), None);
        assert_eq!(ErrorBody::from_value(&json!({})), ErrorBody::default());
    }

    #[test]
    fn token_debug_hides_the_token() {
        let t: TokenResponse =
            serde_json::from_value(json!({"access_token": "secret-jwt", "expires_in": 86400}))
                .unwrap();
        assert!(!format!("{t:?}").contains("secret-jwt"));
    }

    #[test]
    fn webhook_removal_and_envelope_forms_are_told_apart() {
        let r = WebhookPayload::from_value(&json!({"RemoveId": [1, 2]})).unwrap();
        assert_eq!(
            r,
            WebhookPayload::Removal(WebhookRemoval {
                remove_id: vec![1, 2]
            })
        );
        let e = WebhookPayload::from_value(&json!({
            "Id": "x", "Attempt": 2,
            "Notifications": [{"Action": "customer.delete", "Data": [3, {"Id": 4}]}]
        }))
        .unwrap();
        let WebhookPayload::Envelope(env) = e else {
            panic!("envelope expected")
        };
        assert_eq!(env.attempt, Some(2));
        assert_eq!(env.notifications[0].event(), WebhookEvent::CustomerDelete);
        assert_eq!(env.notifications[0].ids(), vec![3, 4]);
    }
}
