//! Our reference in the KiotViet orders a push leaves (R-ORD-5). The ID-map keys of a pushed
//! order are keying rules shared with the invoice pull: they live in [`crate::links`].

use serde_json::Value;

pub use crate::links::{order_code_key, push_links, reference_key};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
