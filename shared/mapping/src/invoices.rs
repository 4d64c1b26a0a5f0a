//! Invoice rules, KiotViet FnB → Abaha: which invoices are synced (R-INV-1, completed only) and
//! how an invoice becomes an Abaha order item (R-INV-2). Which Abaha order it updates is decided
//! by the caller (ID map); this module only carries the link it is given.

use crate::abaha::{ORDER_STATUS_COMPLETED, OrderCustomer, OrderItem, OrderLine, PaymentItem};
use crate::kiotviet::Invoice;
use crate::time::to_vn;

/// What an invoice's status means for the sync (§5.6: 1 completed, 2 cancelled, 3 in progress,
/// 5 delivery failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoiceClass {
    Completed,
    Cancelled,
    InProgress,
    DeliveryFailed,
    /// Any other status code; 0 when neither `status` nor `statusValue` could be read.
    Unknown(i32),
}

impl InvoiceClass {
    /// R-INV-1: only completed invoices are synced; the others are skipped under this reason.
    pub fn as_skip_reason(self) -> Option<&'static str> {
        match self {
            InvoiceClass::Completed => None,
            InvoiceClass::Cancelled => Some("cancelled"),
            InvoiceClass::InProgress => Some("in_progress"),
            InvoiceClass::DeliveryFailed => Some("delivery_failed"),
            InvoiceClass::Unknown(_) => Some("unknown_status"),
        }
    }

    pub fn is_synced(self) -> bool {
        self == InvoiceClass::Completed
    }
}

/// R-INV-1: classifies by `status`; when it is absent, by the Vietnamese `statusValue` text
/// (S2 matches "hủy"/"huỷ" the same way — both spellings of the accented letter occur).
pub fn classify(inv: &Invoice) -> InvoiceClass {
    match inv.status {
        Some(1) => InvoiceClass::Completed,
        Some(2) => InvoiceClass::Cancelled,
        Some(3) => InvoiceClass::InProgress,
        Some(5) => InvoiceClass::DeliveryFailed,
        Some(other) => InvoiceClass::Unknown(other),
        None => classify_text(inv.status_value.as_deref().unwrap_or("")),
    }
}

fn classify_text(text: &str) -> InvoiceClass {
    let t = text.trim().to_lowercase();
    if t.contains("hủy") || t.contains("huỷ") || t.contains("cancel") {
        InvoiceClass::Cancelled
    } else if t.contains("hoàn thành") || t == "completed" {
        InvoiceClass::Completed
    } else if t.contains("không giao được") {
        InvoiceClass::DeliveryFailed
    } else if t.contains("đang xử lý") {
        InvoiceClass::InProgress
    } else {
        InvoiceClass::Unknown(0)
    }
}

/// The order's customer as far as the invoice tells it; `None` for a walk-in sale: no KiotViet
/// customer and no phone, whatever name the till printed (KiotViet calls them "Khách lẻ").
pub fn order_customer(inv: &Invoice, phone: Option<String>) -> Option<OrderCustomer> {
    let name = inv
        .customer_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let kiotviet_id = inv.customer_id.filter(|id| *id > 0);
    if kiotviet_id.is_none() && phone.is_none() {
        return None;
    }
    Some(OrderCustomer {
        kiotviet_id,
        phone,
        name: name.map(str::to_owned),
    })
}

/// R-INV-2: a completed invoice as an Abaha order item.
///
/// * `abaha_order_id` links it to the order we pushed (so that order is updated, not duplicated);
/// * `kiotviet_order_code` falls back to the invoice's own `orderCode`;
/// * `purchased_at` is `purchaseDate` (else `createdDate`) in `+07:00`;
/// * `subtotal` = Σ(price × quantity) − line discounts (a line's `subTotal` wins when present,
///   since KiotViet computed it); `discount` is the invoice discount; `total` the amount due
///   (computed when missing); `paid` = `totalPayment`.
pub fn order_item(
    inv: &Invoice,
    abaha_order_id: Option<String>,
    kiotviet_order_code: Option<String>,
    product_abaha_id: impl Fn(i64) -> Option<String>,
    customer: Option<OrderCustomer>,
) -> OrderItem {
    let lines: Vec<OrderLine> = inv
        .invoice_details
        .iter()
        .map(|d| OrderLine {
            kiotviet_product_id: d.product_id,
            abaha_product_id: product_abaha_id(d.product_id),
            name: d.product_name.clone(),
            quantity: d.quantity.unwrap_or(0.0),
            price: d.price.unwrap_or(0.0),
            discount: d.discount.unwrap_or(0.0),
            note: d.note.clone().filter(|n| !n.trim().is_empty()),
        })
        .collect();
    let subtotal = money(
        inv.invoice_details
            .iter()
            .zip(&lines)
            .map(|(d, l)| d.sub_total.unwrap_or(l.price * l.quantity - l.discount))
            .sum(),
    );
    let discount = inv.discount.unwrap_or(0.0);
    OrderItem {
        kiotviet_id: inv.id,
        invoice_code: inv.code.clone(),
        kiotviet_order_code: kiotviet_order_code
            .or_else(|| inv.order_code.clone())
            .filter(|c| !c.trim().is_empty()),
        abaha_order_id,
        status: ORDER_STATUS_COMPLETED.to_owned(),
        purchased_at: inv.purchase_date.or(inv.created_date).map(|d| to_vn(&d)),
        customer,
        lines,
        subtotal,
        discount,
        total: inv.total.unwrap_or_else(|| money(subtotal - discount)),
        paid: inv.total_payment.unwrap_or(0.0),
        payments: inv
            .payments
            .iter()
            .map(|p| PaymentItem {
                method: p.method.clone(),
                amount: p.amount.unwrap_or(0.0),
            })
            .collect(),
    }
}

/// VND amounts to the cent: keeps `0.1 × 3` from showing as `0.30000000000000004`.
fn money(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invoice(v: serde_json::Value) -> Invoice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn r_inv_1_status_codes_classify() {
        // GIVEN each documented status code WHEN classified THEN only 1 is synced
        let table = [
            (1, InvoiceClass::Completed, None),
            (2, InvoiceClass::Cancelled, Some("cancelled")),
            (3, InvoiceClass::InProgress, Some("in_progress")),
            (5, InvoiceClass::DeliveryFailed, Some("delivery_failed")),
            (4, InvoiceClass::Unknown(4), Some("unknown_status")),
        ];
        for (status, class, reason) in table {
            let c = classify(&invoice(json!({"id": 1, "status": status})));
            assert_eq!(c, class, "{status}");
            assert_eq!(c.as_skip_reason(), reason);
            assert_eq!(c.is_synced(), status == 1);
        }
    }

    #[test]
    fn r_inv_1_status_text_is_the_fallback_when_the_code_is_missing() {
        let table = [
            ("Hoàn thành", InvoiceClass::Completed),
            ("Đã hủy", InvoiceClass::Cancelled),
            ("Đã huỷ", InvoiceClass::Cancelled),
            ("ĐÃ HỦY", InvoiceClass::Cancelled),
            ("Đang xử lý", InvoiceClass::InProgress),
            ("Không giao được", InvoiceClass::DeliveryFailed),
            ("???", InvoiceClass::Unknown(0)),
        ];
        for (text, class) in table {
            assert_eq!(
                classify(&invoice(json!({"id": 1, "statusValue": text}))),
                class,
                "{text}"
            );
        }
        assert_eq!(
            classify(&invoice(json!({"id": 1}))),
            InvoiceClass::Unknown(0)
        );
        // The code wins over the text.
        assert_eq!(
            classify(&invoice(
                json!({"id": 1, "status": 1, "statusValue": "Đã hủy"})
            )),
            InvoiceClass::Completed
        );
    }

    fn sample() -> Invoice {
        invoice(json!({
            "id": 251996687, "code": "HD012345", "orderCode": "DH000451",
            "purchaseDate": "2026-05-01T10:52:12.5730000",
            "customerId": 880001, "customerName": "Nguyễn Văn A",
            "total": 80000, "totalPayment": 80000, "discount": 5000,
            "status": 1, "statusValue": "Hoàn thành",
            "invoiceDetails": [
                {"productId": 5001, "productName": "Cà phê sữa", "quantity": 2, "price": 35000, "discount": 0, "note": "ít đá"},
                {"productId": 6001, "productName": "Trân châu", "quantity": 3, "price": 5000, "discount": 2000, "note": ""}
            ],
            "payments": [
                {"id": 1, "amount": 50000, "method": "Cash"},
                {"id": 2, "amount": 30000, "method": "Transfer"}
            ]
        }))
    }

    #[test]
    fn r_inv_2_invoice_of_a_pushed_order_carries_its_abaha_order_id() {
        // GIVEN a completed invoice made from the order we pushed as A-1001
        let inv = sample();
        // WHEN mapped with that link
        let item = order_item(&inv, Some("A-1001".into()), None, |_| None, None);
        // THEN the Abaha order is named, and the KiotViet order code comes from the invoice
        assert_eq!(item.abaha_order_id.as_deref(), Some("A-1001"));
        assert_eq!(item.kiotviet_order_code.as_deref(), Some("DH000451"));
        assert_eq!(item.status, "completed");
    }

    #[test]
    fn r_inv_2_lines_totals_and_payments_are_carried() {
        // GIVEN an invoice with two lines, a line discount, an invoice discount and two payments
        let inv = sample();
        let cust = order_customer(&inv, Some("0987654321".into()));
        // WHEN mapped
        let item = order_item(
            &inv,
            None,
            Some("DH-override".into()),
            |id| (id == 5001).then(|| "P-9".to_owned()),
            cust.clone(),
        );
        // THEN lines carry ids, names, quantities, prices, discounts and notes
        assert_eq!(item.lines.len(), 2);
        assert_eq!(item.lines[0].abaha_product_id.as_deref(), Some("P-9"));
        assert_eq!(item.lines[1].abaha_product_id, None);
        assert_eq!(item.lines[0].note.as_deref(), Some("ít đá"));
        assert_eq!(item.lines[1].note, None);
        // AND subtotal = 2×35000 + 3×5000 − 2000, discount/total/paid from the invoice
        assert_eq!(item.subtotal, 83000.0);
        assert_eq!(
            (item.discount, item.total, item.paid),
            (5000.0, 80000.0, 80000.0)
        );
        assert_eq!(item.payments.len(), 2);
        assert_eq!(item.payments[1].method.as_deref(), Some("Transfer"));
        assert_eq!(item.kiotviet_order_code.as_deref(), Some("DH-override"));
        assert_eq!(item.customer, cust);
        assert_eq!(item.customer.unwrap().kiotviet_id, Some(880001));
    }

    #[test]
    fn r_inv_2_purchased_at_is_rfc3339_in_vietnam_time() {
        let item = order_item(&sample(), None, None, |_| None, None);
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["purchased_at"], "2026-05-01T10:52:12.573+07:00");
    }

    #[test]
    fn r_inv_2_line_sub_total_wins_and_missing_total_is_computed() {
        let inv = invoice(json!({
            "id": 1, "discount": 1000,
            "invoiceDetails": [{"productId": 1, "quantity": 2, "price": 10000, "discount": 500, "subTotal": 19000}]
        }));
        let item = order_item(&inv, None, None, |_| None, None);
        assert_eq!(item.subtotal, 19000.0);
        assert_eq!(item.total, 18000.0);
        assert_eq!(item.paid, 0.0);
        assert_eq!(item.purchased_at, None);
    }

    #[test]
    fn r_inv_2_walk_in_sale_has_no_customer() {
        assert_eq!(order_customer(&invoice(json!({"id": 1})), None), None);
        // KiotViet names a walk-in "Khách lẻ" (and some shops send customerId 0): still none
        for v in [
            json!({"id": 1, "customerName": "Khách lẻ"}),
            json!({"id": 1, "customerName": "Khách lẻ", "customerId": 0}),
        ] {
            assert_eq!(order_customer(&invoice(v.clone()), None), None, "{v}");
        }
        // AND a guest who left a phone is still carried
        let guest = order_customer(
            &invoice(json!({"id": 1, "customerName": "Chị Lan"})),
            Some("0912345678".into()),
        );
        assert_eq!(guest.and_then(|c| c.phone), Some("0912345678".into()));
    }
}
