//! The ID-map links an order push leaves, and how the invoice pull reads them back (R-INV-2).
//!
//! A pushed order is linked under three keys of the `order` kind: its KiotViet order id, its
//! KiotViet order code (invoices name their order by code) and our reference (what an invoice's
//! delivery block carries when the list leaves the code out). Codes and references are strings
//! and the map is keyed by number, so they are stored under negative 63-bit digests, which can
//! never meet a real KiotViet id.

use std::collections::HashMap;

use mapping::kiotviet::Invoice;
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{IdKind, IdLink};

use super::plan::REFERENCE_PREFIX;
use crate::service::Service;

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

/// The delivery code of a KiotViet order as `GET /orders` lists it: `None` when the order shows
/// no delivery block at all (retail calls it `orderDelivery`, the create body `DeliveryDetail`).
pub fn delivery_code(order: &Value) -> Option<Option<&str>> {
    let block = [
        "orderDelivery",
        "OrderDelivery",
        "deliveryDetail",
        "DeliveryDetail",
    ]
    .iter()
    .find_map(|k| order.get(*k).filter(|b| b.is_object()))?;
    Some(
        ["deliveryCode", "DeliveryCode"]
            .iter()
            .find_map(|k| block.get(*k).and_then(Value::as_str))
            .map(str::trim),
    )
}

/// Whether a KiotViet order carries our reference (case aside: [`super::plan::reference`] stays
/// unique without it).
pub fn has_reference(order: &Value, reference: &str) -> bool {
    delivery_code(order)
        .flatten()
        .is_some_and(|code| code.eq_ignore_ascii_case(reference))
}

/// Where an invoice's order came from, when it was one of our pushes (R-INV-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub abaha_order_id: String,
    pub kiotviet_order_code: Option<String>,
}

/// The Abaha orders that `invoices` were made from, by invoice id; invoices of orders we never
/// pushed are absent (they become new Abaha orders).
///
/// An invoice names its order by `orderCode`. The reference documents that field on the invoice
/// detail only (reference §5.6), and one `GET /invoices/{id}` per invoice would spend the GET
/// budget on every overlap re-read. So the list row decides, without another call: its
/// `orderCode` when present, else our own reference in its delivery block
/// (`invoiceDelivery.deliveryCode`, which every pushed order carries; the pull lists invoices
/// with `includeInvoiceDelivery=true`). An invoice that shows neither is not from our push as
/// far as we can tell, and is sent as a new order.
pub async fn origins_of(
    svc: &Service,
    shop: &str,
    invoices: &[&Invoice],
) -> Result<HashMap<i64, Origin>, store::StoreError> {
    let keys: Vec<(i64, i64)> = invoices
        .iter()
        .filter_map(|inv| {
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
            by_code.or_else(by_reference).map(|key| (inv.id, key))
        })
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let wanted: Vec<i64> = keys.iter().map(|(_, key)| *key).collect();
    let links = svc.store.get_links(shop, IdKind::Order, &wanted).await?;
    let by_id: HashMap<i64, &&Invoice> = invoices.iter().map(|inv| (inv.id, inv)).collect();
    Ok(keys
        .into_iter()
        .filter_map(|(invoice_id, key)| {
            let link = links.get(&key)?;
            let listed_code = by_id
                .get(&invoice_id)
                .and_then(|inv| inv.order_code.clone());
            Some((
                invoice_id,
                Origin {
                    abaha_order_id: link.abaha_id.clone(),
                    // A reference link carries the code in its hash slot (see `push_links`).
                    kiotviet_order_code: listed_code.or_else(|| link.hash.clone()),
                },
            ))
        })
        .collect())
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

    fn memory_service() -> Service {
        Service::in_memory(crate::Settings::default(), store::MemoryQueue::new())
    }

    fn invoice(v: Value) -> Invoice {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn r_inv_2_an_invoice_finds_its_pushed_order_by_code_or_by_our_reference() {
        // GIVEN Abaha order A-1 pushed as KiotViet order DH000031 with our reference ABH-A-1
        let svc = memory_service();
        svc.store
            .put_links(
                "s",
                IdKind::Order,
                &push_links("A-1", "ABH-A-1", 9_100_031, "DH000031"),
            )
            .await
            .unwrap();

        let by_code = invoice(json!({"id": 1, "orderCode": "DH000031"}));
        let by_reference =
            invoice(json!({"id": 2, "invoiceDelivery": {"deliveryCode": "ABH-A-1"}}));
        let till_delivery =
            invoice(json!({"id": 3, "invoiceDelivery": {"deliveryCode": "GH000031"}}));
        let walk_in = invoice(json!({"id": 4}));
        let other_order = invoice(json!({"id": 5, "orderCode": "DH000032"}));
        let all = [
            &by_code,
            &by_reference,
            &till_delivery,
            &walk_in,
            &other_order,
        ];

        // WHEN the pull asks where they came from
        let origins = origins_of(&svc, "s", &all).await.unwrap();

        // THEN the code and, without it, our reference lead to A-1 with the KiotViet code
        let a1 = Origin {
            abaha_order_id: "A-1".into(),
            kiotviet_order_code: Some("DH000031".into()),
        };
        assert_eq!(origins.get(&1), Some(&a1));
        assert_eq!(origins.get(&2), Some(&a1));
        // AND invoices of other orders, or of none, are not ours
        assert_eq!(origins.len(), 2, "{origins:?}");
        // AND another shop's links are not seen
        assert!(origins_of(&svc, "other", &all).await.unwrap().is_empty());
    }

    #[test]
    fn r_ord_5_reference_is_found_in_the_delivery_block() {
        let o = json!({"id": 1, "code": "DH1", "orderDelivery": {"deliveryCode": "ABH-A-1001"}});
        assert!(has_reference(&o, "ABH-A-1001"));
        assert!(!has_reference(&o, "ABH-A-1002"));
        assert!(!has_reference(&json!({"id": 2}), "ABH-A-1001"));
        // The create body's name for the block, and a code whose case KiotViet changed
        let detail = json!({"id": 3, "DeliveryDetail": {"DeliveryCode": " abh-a-1001 "}});
        assert!(has_reference(&detail, "ABH-A-1001"));
        // An order without any delivery block cannot tell; one with a block but no code can
        assert_eq!(delivery_code(&json!({"id": 4})), None);
        assert_eq!(
            delivery_code(&json!({"id": 5, "orderDelivery": {}})),
            Some(None)
        );
    }
}
