//! Which of our pushed orders an invoice was made from (R-INV-2): the invoice pull reads the order
//! links a push left (keyed by [`crate::links`]).

use std::collections::HashMap;

use mapping::kiotviet::Invoice;
use store::IdKind;

use crate::links;
use crate::service::Service;

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
        .filter_map(|inv| links::origin_key(inv).map(|key| (inv.id, key)))
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
    use crate::links::push_links;
    use serde_json::{Value, json};

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
}
