//! Sorting a verified delivery into the jobs of the catalog and customer queues.

use std::collections::BTreeSet;

use mapping::kiotviet::{Inventory, WebhookEvent, WebhookPayload};
use store::Connection;

use super::{Change, Notice};

/// A verified delivery, sorted by queue; what is dropped here is only counted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) catalog: Vec<Notice>,
    pub(super) customers: Vec<Notice>,
    /// Records not applied: switched-off parts (R-CON-6), other branches' stock (R-PRD-5),
    /// events this service does not handle, records without a readable id.
    pub(super) ignored: usize,
}

/// Sorts a delivery into per-queue notices. `hint` is the `event` query parameter of the URL we
/// registered, which names the event of the bare `{"RemoveId": […]}` form.
pub(super) fn plan(payload: &WebhookPayload, hint: Option<&str>, conn: &Connection) -> Plan {
    let mut plan = Plan::default();
    let add = |action: Change, ids: Vec<i64>, plan: &mut Plan| {
        if !action.is_switched_on(conn) {
            plan.ignored += ids.len();
            return;
        }
        let ids: Vec<i64> = ids
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            return;
        }
        let list = if action.is_catalog() {
            &mut plan.catalog
        } else {
            &mut plan.customers
        };
        match list.iter_mut().find(|n| n.action == action) {
            Some(n) => {
                n.ids.extend(ids);
                n.ids.sort_unstable();
                n.ids.dedup();
            }
            None => list.push(Notice { action, ids }),
        }
    };
    match payload {
        WebhookPayload::Removal(r) => {
            // Our hooks carry the event in their URL. Without it (a hook registered by someone
            // else), a bare removal is read as a product deletion: only ids linked to an Abaha
            // product produce anything (a manual action), and a customer deletion has no effect
            // in Abaha anyway.
            let action = match hint.map(str::trim) {
                Some(h) if h.eq_ignore_ascii_case("customer.delete") => Change::CustomerDelete,
                _ => Change::ProductDelete,
            };
            add(action, r.remove_id.clone(), &mut plan);
        }
        WebhookPayload::Envelope(env) => {
            for n in &env.notifications {
                let records = n.data.len();
                let (action, ids) = match n.event() {
                    WebhookEvent::ProductUpdate => (Change::ProductUpdate, n.ids()),
                    WebhookEvent::ProductDelete => (Change::ProductDelete, n.ids()),
                    WebhookEvent::CustomerUpdate => (Change::CustomerUpdate, n.ids()),
                    WebhookEvent::CustomerDelete => (Change::CustomerDelete, n.ids()),
                    WebhookEvent::StockUpdate => {
                        // R-PRD-5: only the connection's branch is Abaha's stock.
                        let ids: Vec<i64> = n
                            .decode::<Inventory>()
                            .into_iter()
                            .flatten()
                            .filter(|i| i.branch_id.is_none_or(|b| b == conn.branch_id))
                            .filter_map(|i| i.product_id)
                            .collect();
                        (Change::StockUpdate, ids)
                    }
                    WebhookEvent::Other(_) => {
                        plan.ignored += records;
                        continue;
                    }
                };
                plan.ignored += records.saturating_sub(ids.len());
                add(action, ids, &mut plan);
            }
        }
    }
    plan
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::{Value, json};
    use store::{SealedSecret, Switches};

    /// A connection with the given switches (receive's tests use it too).
    pub(crate) fn conn(products: bool, customers: bool) -> Connection {
        Connection {
            shop_id: "s1".into(),
            account_type: "fnb".into(),
            retailer: "r".into(),
            client_id: "c".into(),
            sealed_secret: SealedSecret::from_base64("x"),
            branch_id: 233443,
            sync: Switches {
                products,
                customers,
                orders: true,
            },
            keep_app_product_status: true,
            invoice_history_days: 30,
            shop_token_hash: None,
            webhook_secret: None,
            webhook_ids: vec![],
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn payload(v: Value) -> WebhookPayload {
        WebhookPayload::from_value(&v).expect("a webhook body")
    }

    #[test]
    fn r_syn_8_products_and_stock_go_to_the_catalog_queue_customers_to_theirs() {
        // GIVEN one delivery with a product, two stock rows (central and another branch) and a customer
        let p = payload(json!({"Id": "d1", "Attempt": 1, "Notifications": [
            {"Action": "product.update", "Data": [{"Id": 5001, "Name": "Cà phê"}]},
            {"Action": "stock.update", "Data": [
                {"ProductId": 5001, "BranchId": 233443, "OnHand": 3},
                {"ProductId": 5001, "BranchId": 999, "OnHand": 9}]},
            {"Action": "customer.update", "Data": [{"Id": 77, "ContactNumber": "0987654321"}]},
            {"Action": "invoice.update", "Data": [{"Id": 1}]}]}));
        // WHEN it is planned
        let plan = plan(&p, None, &conn(true, true));
        // THEN the catalog gets the product and its central stock, customers the customer
        assert_eq!(
            plan.catalog,
            vec![
                Notice {
                    action: Change::ProductUpdate,
                    ids: vec![5001]
                },
                Notice {
                    action: Change::StockUpdate,
                    ids: vec![5001]
                },
            ]
        );
        assert_eq!(
            plan.customers,
            vec![Notice {
                action: Change::CustomerUpdate,
                ids: vec![77]
            }]
        );
        // AND the other branch's stock row and the unknown event are only counted (R-PRD-5)
        assert_eq!(plan.ignored, 2);
    }

    #[test]
    fn r_con_6_switched_off_parts_are_not_queued() {
        let p = payload(json!({"Id": "d1", "Notifications": [
            {"Action": "product.update", "Data": [{"Id": 5001}]},
            {"Action": "customer.update", "Data": [{"Id": 77}]}]}));
        let plan = plan(&p, None, &conn(false, true));
        assert!(plan.catalog.is_empty());
        assert_eq!(plan.customers.len(), 1);
        assert_eq!(plan.ignored, 1);
        let plan = super::plan(&p, None, &conn(false, false));
        assert!(plan.catalog.is_empty() && plan.customers.is_empty());
        assert_eq!(plan.ignored, 2);
    }

    #[test]
    fn r_prd_4_bare_removals_take_their_event_from_the_registered_url() {
        let p = payload(json!({"RemoveId": [5001, 5002]}));
        let products = plan(&p, Some("product.delete"), &conn(true, true));
        assert_eq!(
            products.catalog,
            vec![Notice {
                action: Change::ProductDelete,
                ids: vec![5001, 5002]
            }]
        );
        let customers = plan(&p, Some("customer.delete"), &conn(true, true));
        assert_eq!(
            customers.customers,
            vec![Notice {
                action: Change::CustomerDelete,
                ids: vec![5001, 5002]
            }]
        );
        // Without the hint a removal is read as a product deletion (only linked products matter).
        assert_eq!(
            plan(&p, None, &conn(true, true)).catalog[0].action,
            Change::ProductDelete
        );
    }
}
