//! Abaha Sync API wire types (CONTRACTS.md §2): the upsert items this service writes into Abaha,
//! the batch envelope and the per-item answers. Field names are the contract's, snake_case.
//!
//! Products carry no visibility field (R-PRD-3) and nothing here deletes (R-PRD-4).

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::de;
use crate::time::{date_opt, kv_datetime_opt};

/// At most this many items per upsert call (CONTRACTS §2).
pub const MAX_BATCH: usize = 100;

/// `POST …/categories:upsert` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryItem {
    pub kiotviet_id: i64,
    pub name: String,
    /// `null` for roots.
    pub parent_kiotviet_id: Option<i64>,
    pub rank: i64,
}

/// `POST …/products:upsert` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductItem {
    pub kiotviet_id: i64,
    pub code: Option<String>,
    pub name: String,
    pub full_name: Option<String>,
    pub category_kiotviet_id: Option<i64>,
    pub unit: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<AttributeItem>,
    /// KiotViet `masterProductId` for a variant, else `masterUnitId` for a unit, `null` for a
    /// product that is its own master.
    pub master_kiotviet_id: Option<i64>,
    pub is_topping: bool,
    #[serde(default)]
    pub topping_kiotviet_ids: Vec<i64>,
    pub price: f64,
    pub list_price: f64,
    /// On-hand stock in the connection's branch; `null` when KiotViet reported none for it.
    pub stock: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeItem {
    pub name: String,
    pub value: String,
}

/// `male` / `female`, as both Abaha APIs write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    #[serde(alias = "Male", alias = "MALE", alias = "m", alias = "M")]
    Male,
    #[serde(alias = "Female", alias = "FEMALE", alias = "f", alias = "F")]
    Female,
}

impl Gender {
    /// KiotViet's encoding: true = male, false = female.
    pub fn from_kiotviet(male: bool) -> Self {
        if male { Gender::Male } else { Gender::Female }
    }
    pub fn to_kiotviet(self) -> bool {
        self == Gender::Male
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
        }
    }
}

/// `POST …/customers:upsert` item (keyed by phone on the Abaha side, R-CUS-1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerItem {
    pub kiotviet_id: i64,
    pub code: Option<String>,
    pub phone: String,
    pub name: String,
    pub email: Option<String>,
    pub address: Option<String>,
    pub gender: Option<Gender>,
    /// `YYYY-MM-DD` or `null`.
    #[serde(default, with = "date_opt")]
    pub birth_date: Option<NaiveDate>,
}

/// `POST …/orders:upsert` item: one completed KiotViet invoice (R-INV-1/2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// The invoice id.
    pub kiotviet_id: i64,
    pub invoice_code: Option<String>,
    pub kiotviet_order_code: Option<String>,
    /// Set when the invoice comes from an order this service pushed (R-INV-2).
    pub abaha_order_id: Option<String>,
    /// Always `"completed"` (only completed invoices are synced).
    pub status: String,
    /// RFC 3339 with `+07:00`.
    #[serde(default, with = "kv_datetime_opt")]
    pub purchased_at: Option<DateTime<FixedOffset>>,
    pub customer: Option<OrderCustomer>,
    #[serde(default)]
    pub lines: Vec<OrderLine>,
    pub subtotal: f64,
    pub discount: f64,
    pub total: f64,
    pub paid: f64,
    #[serde(default)]
    pub payments: Vec<PaymentItem>,
}

/// The one status value an order item carries.
pub const ORDER_STATUS_COMPLETED: &str = "completed";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCustomer {
    pub kiotviet_id: Option<i64>,
    pub phone: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub kiotviet_product_id: i64,
    pub abaha_product_id: Option<String>,
    pub name: Option<String>,
    pub quantity: f64,
    pub price: f64,
    pub discount: f64,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentItem {
    pub method: Option<String>,
    pub amount: f64,
}

/// Batch body `{"items": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upsert<T> {
    pub items: Vec<T>,
}

/// Batch answer `{"results": [...]}`, in item order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpsertAnswer {
    #[serde(default, deserialize_with = "de::null_default")]
    pub results: Vec<ItemResult>,
}

/// One item's outcome: `{kiotviet_id, abaha_id, status}` or `{kiotviet_id, error}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    #[serde(deserialize_with = "de::id")]
    pub kiotviet_id: i64,
    /// Abaha ids are opaque strings; a numeric id is read as its decimal text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de::opt_string"
    )]
    pub abaha_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<UpsertStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

impl ItemResult {
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.status.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertStatus {
    Created,
    Updated,
    Unchanged,
}

impl UpsertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UpsertStatus::Created => "created",
            UpsertStatus::Updated => "updated",
            UpsertStatus::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upsert_answer_reads_both_result_shapes() {
        let a: UpsertAnswer = serde_json::from_value(json!({"results": [
            {"kiotviet_id": 1, "abaha_id": "c-1", "status": "created"},
            {"kiotviet_id": 2, "abaha_id": 99, "status": "unchanged"},
            {"kiotviet_id": 3, "error": {"code": "invalid_parent", "message": "no parent"}}
        ]}))
        .unwrap();
        assert!(a.results[0].is_ok());
        assert_eq!(a.results[1].abaha_id.as_deref(), Some("99"));
        assert_eq!(a.results[2].error.as_ref().unwrap().code, "invalid_parent");
        assert!(!a.results[2].is_ok());
    }

    #[test]
    fn category_item_writes_null_parent_for_roots() {
        let v = serde_json::to_value(CategoryItem {
            kiotviet_id: 1,
            name: "Cà phê".into(),
            parent_kiotviet_id: None,
            rank: 0,
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"kiotviet_id": 1, "name": "Cà phê", "parent_kiotviet_id": null, "rank": 0})
        );
    }

    #[test]
    fn customer_item_writes_gender_and_birth_date_as_contract_strings() {
        let v = serde_json::to_value(CustomerItem {
            kiotviet_id: 1,
            code: Some("KH1".into()),
            phone: "0987654321".into(),
            name: "A".into(),
            email: None,
            address: None,
            gender: Some(Gender::Female),
            birth_date: NaiveDate::from_ymd_opt(1995, 6, 1),
        })
        .unwrap();
        assert_eq!(v["gender"], "female");
        assert_eq!(v["birth_date"], "1995-06-01");
        let back: CustomerItem = serde_json::from_value(v).unwrap();
        assert_eq!(back.gender, Some(Gender::Female));
    }
}
