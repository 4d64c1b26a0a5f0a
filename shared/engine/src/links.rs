//! Every ID-map keying rule, in one place: what key and what hash a link is stored under. The
//! pushes write links and the pulls read them (and the other way round), so both import these
//! rules from here rather than from each other. Pure functions; the reads and writes are the
//! callers'.
//!
//! Orders: a pushed order is linked under three keys of the `order` kind: its KiotViet order id,
//! its KiotViet order code (invoices name their order by code) and our reference (what an
//! invoice's delivery block carries when the list leaves the code out). Codes and references are
//! strings and the map is keyed by number, so they are stored under negative 63-bit digests,
//! which can never meet a real KiotViet id.
//!
//! Customers: the link stores a fingerprint of what both sides hold, so a push that only echoes
//! what the pull wrote (or a pull right after a push) changes nothing (R-CUS-3).

use mapping::abaha::CustomerItem;
use mapping::api::AbahaCustomer;
use mapping::customers::CustomerCore;
use mapping::hash::content_hash;
use mapping::kiotviet::{Customer, Invoice};
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::IdLink;

/// Prefix of our reference in a KiotViet order's delivery code.
pub const REFERENCE_PREFIX: &str = "ABH-";

/// The key of the link from a KiotViet order code to the Abaha order.
pub fn order_code_key(code: &str) -> i64 {
    let digest = Sha256::digest(code.trim().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    -((i64::from_be_bytes(b) & i64::MAX).max(1))
}

/// The key of the link from our reference to the Abaha order; apart from codes by its prefix.
pub fn reference_key(reference: &str) -> i64 {
    order_code_key(&format!("ref:{}", reference.trim()))
}

/// The links of one push: KiotViet order id and code, and our reference, which keeps the
/// KiotViet code in its hash slot (order links hold no content hash) so an invoice found by
/// reference still names its order code.
pub fn push_links(
    abaha_order_id: &str,
    reference: &str,
    kiotviet_order_id: i64,
    kiotviet_order_code: &str,
) -> Vec<(i64, IdLink)> {
    let link = IdLink {
        abaha_id: abaha_order_id.to_string(),
        hash: None,
    };
    let mut links = vec![(kiotviet_order_id, link.clone())];
    if !kiotviet_order_code.is_empty() {
        links.push((order_code_key(kiotviet_order_code), link));
        links.push((
            reference_key(reference),
            IdLink {
                abaha_id: abaha_order_id.to_string(),
                hash: Some(kiotviet_order_code.to_string()),
            },
        ));
    }
    links
}

/// The key under which an invoice finds the order it was made from, when it names one (R-INV-2):
/// its `orderCode` when present, else our own reference in its delivery block
/// (`invoiceDelivery.deliveryCode`, which every pushed order carries). None: it names no order
/// of ours as far as the list row tells.
pub fn origin_key(inv: &Invoice) -> Option<i64> {
    let by_code = inv
        .order_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(order_code_key);
    let by_reference = || {
        inv.invoice_delivery
            .as_ref()
            .and_then(|d| d.get("deliveryCode").or_else(|| d.get("DeliveryCode")))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|c| c.starts_with(REFERENCE_PREFIX))
            .map(reference_key)
    };
    by_code.or_else(by_reference)
}

/// What the two sides must agree on for a customer to count as unchanged ([`CustomerCore`]:
/// phone, name, email, address, gender, birth date, normalised alike). The KiotViet code and ids
/// are left out: Abaha does not hold the code, and ids are the link itself.
pub fn fingerprint(item: &CustomerItem) -> String {
    content_hash(&CustomerCore::from(item))
}

/// The fingerprint of a customer as Abaha sends it, to compare with a link's.
pub fn fingerprint_of_abaha(c: &AbahaCustomer) -> String {
    content_hash(&CustomerCore::from(c))
}

/// The hash a customer link stores: the pull's content hash (everything Abaha receives) and the
/// fingerprint (what both sides hold), so each direction compares what it can see.
pub fn link_hash(item: &CustomerItem) -> String {
    format!("{}.{}", content_hash(item), fingerprint(item))
}

/// The fingerprint half of a customer link's hash.
pub fn link_fingerprint(hash: &str) -> Option<&str> {
    hash.split_once('.').map(|(_, fp)| fp)
}

/// The link hash of a customer as KiotViet holds it (None: it maps to no Abaha customer).
pub fn link_hash_of_kiotviet(c: &Customer) -> Option<String> {
    mapping::customers::customer_item(c)
        .ok()
        .map(|i| link_hash(&i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_code_keys_are_negative_and_stable() {
        let a = order_code_key("DH000451");
        assert!(a < 0);
        assert_eq!(a, order_code_key(" DH000451 "));
        assert_ne!(a, order_code_key("DH000452"));
        // A reference never lands on the key of an order code, even one spelled alike.
        assert_ne!(reference_key("ABH-DH1"), order_code_key("ABH-DH1"));
    }

    fn invoice(v: Value) -> Invoice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn r_inv_2_an_invoice_is_keyed_by_its_order_code_else_by_our_reference() {
        let rows = [
            (
                "by code",
                json!({"id": 1, "orderCode": " DH000031 "}),
                Some(order_code_key("DH000031")),
            ),
            (
                "code before reference",
                json!({"id": 2, "orderCode": "DH1", "invoiceDelivery": {"deliveryCode": "ABH-A-1"}}),
                Some(order_code_key("DH1")),
            ),
            (
                "by our reference",
                json!({"id": 3, "invoiceDelivery": {"deliveryCode": "ABH-A-1"}}),
                Some(reference_key("ABH-A-1")),
            ),
            (
                "create-body spelling",
                json!({"id": 4, "invoiceDelivery": {"DeliveryCode": "ABH-A-1"}}),
                Some(reference_key("ABH-A-1")),
            ),
            (
                "a till's delivery code is not ours",
                json!({"id": 5, "invoiceDelivery": {"deliveryCode": "GH000031"}}),
                None,
            ),
            ("an empty code", json!({"id": 6, "orderCode": "  "}), None),
            ("walk-in", json!({"id": 7}), None),
        ];
        for (rule, inv, key) in rows {
            assert_eq!(origin_key(&invoice(inv)), key, "{rule}");
        }
    }
}
