//! Invoice pull KiotViet FnB → Abaha, end to end (R-INV-1…3): only completed invoices arrive, an
//! invoice of an order we pushed comes back as that Abaha order, re-reads create nothing, late
//! edits arrive, and a late cancel becomes a manual action.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod support;

use e2e_tests::{Api, StackOptions, connect, start, sync};
use sandbox::abaha::Kind;
use sandbox::kiotviet::{InvoiceEdits, KvConfig, LineInput};
use serde_json::{Value, json};
use support::{SHOP, kv_orders, menu, order, push, shop_with_menu};

fn invoices_only(full: bool) -> Value {
    json!({"entities": ["invoices"], "full": full})
}

fn tally(report: &Value) -> &Value {
    &report["entities"]["invoices"]
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The most recent completed invoice of the seeded shop.
fn latest_completed(stack: &e2e_tests::Stack) -> Value {
    let kv = stack.kiotviet.as_ref().unwrap();
    kv.invoice_ids()
        .into_iter()
        .rev()
        .filter_map(|id| kv.invoice(id))
        .find(|i| i["status"] == json!(1))
        .expect("a completed invoice")
}

#[tokio::test]
async fn r_inv_1_only_completed_invoices_arrive_the_others_are_counted_by_reason() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let kv = stack.kiotviet.as_ref().unwrap();
    // GIVEN the seeded month of sales plus one fresh invoice of each status
    for status in [1, 2, 3, 5] {
        let product = kv.product_ids()[0];
        kv.add_invoice(sandbox::kiotviet::NewInvoice {
            lines: vec![LineInput {
                product_id: product,
                quantity: 1.0,
                ..Default::default()
            }],
            status: Some(status),
            ..Default::default()
        })
        .unwrap();
    }
    let all: Vec<Value> = kv
        .invoice_ids()
        .into_iter()
        .filter_map(|id| kv.invoice(id))
        .collect();
    let count = |s: i64| all.iter().filter(|i| i["status"] == json!(s)).count() as u64;

    // WHEN invoices are synced
    let report = sync(&stack, SHOP, invoices_only(true)).await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    let t = tally(&report);

    // THEN every invoice was read, only the completed ones arrived, the rest counted by reason
    assert_eq!(n(&t["read"]), all.len() as u64, "{t}");
    assert_eq!(n(&t["created"]), count(1), "{t}");
    assert_eq!(n(&t["skipped"]["cancelled"]), count(2), "{t}");
    assert_eq!(n(&t["skipped"]["in_progress"]), count(3), "{t}");
    assert_eq!(n(&t["skipped"]["delivery_failed"]), count(5), "{t}");
    let orders = stack.abaha.as_ref().unwrap().items(SHOP, Kind::Orders);
    assert_eq!(orders.len() as u64, count(1));
    for o in &orders {
        let inv = kv.invoice(o["kiotviet_id"].as_i64().unwrap()).unwrap();
        assert_eq!(inv["status"], json!(1), "{o}");
        assert_eq!(o["status"], json!("completed"));
        assert_eq!(o["invoice_code"], inv["code"]);
        assert_eq!(o["total"].as_f64(), inv["total"].as_f64(), "{o}");
        assert!(
            o["purchased_at"].as_str().unwrap().ends_with("+07:00"),
            "{o}"
        );
    }
    stack.stop().await;
}

/// R-INV-2 with the invoice list as the sandbox is configured: `orderCode` in the rows or not.
async fn invoice_of_a_pushed_order_comes_back_as_that_order(list_order_code: bool) {
    let opts = StackOptions {
        kiotviet: Some(KvConfig {
            invoice_list_order_code: list_order_code,
            ..KvConfig::default()
        }),
        ..StackOptions::default()
    };
    let Some((stack, _)) = shop_with_menu(opts).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let m = menu(&stack);
    // GIVEN an Abaha order pushed to the till
    let pushed = push(&api, &order("A-900", "DH900", &m)).await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let kv_order = kv_orders(&stack).remove(0);
    let order_id = kv_order["id"].as_i64().unwrap();
    // AND the till changed it (3 of the first item, the second dropped, a third added) and
    // completed it
    let edits = InvoiceEdits {
        lines: Some(vec![
            LineInput {
                product_id: m[0].kiotviet_id,
                quantity: 3.0,
                price: Some(m[0].price),
                ..Default::default()
            },
            LineInput {
                product_id: m[2].kiotviet_id,
                quantity: 1.0,
                price: Some(m[2].price),
                ..Default::default()
            },
        ]),
        ..InvoiceEdits::default()
    };
    let invoice_id = kv.invoice_order(order_id, edits).unwrap();
    let invoice = kv.invoice(invoice_id).unwrap();

    // WHEN invoices are synced
    let report = sync(&stack, SHOP, invoices_only(false)).await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");

    // THEN the invoice updates Abaha order A-900 instead of becoming a new one
    let abaha = stack.abaha.as_ref().unwrap();
    let item = abaha
        .item(SHOP, Kind::Orders, invoice_id)
        .expect("the invoice arrived");
    assert_eq!(item["abaha_order_id"], json!("A-900"), "{item}");
    assert_eq!(item["abaha_id"], json!("A-900"), "{item}");
    assert_eq!(item["kiotviet_order_code"], kv_order["code"], "{item}");
    assert_eq!(
        abaha
            .items(SHOP, Kind::Orders)
            .iter()
            .filter(|o| o["abaha_id"] == json!("A-900"))
            .count(),
        1
    );
    // AND it carries what the till made of it: lines with both product ids, totals, payments
    let lines = item["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (
            lines[0]["kiotviet_product_id"].as_i64(),
            lines[0]["abaha_product_id"].as_str()
        ),
        (Some(m[0].kiotviet_id), Some(m[0].abaha_id.as_str()))
    );
    assert_eq!(lines[0]["quantity"].as_f64(), Some(3.0));
    assert_eq!(
        lines[1]["abaha_product_id"].as_str(),
        Some(m[2].abaha_id.as_str())
    );
    assert_eq!(item["total"].as_f64(), invoice["total"].as_f64());
    assert_eq!(item["paid"].as_f64(), invoice["totalPayment"].as_f64());
    assert!(!item["payments"].as_array().unwrap().is_empty());

    // AND a re-sync leaves it as it is
    let again = sync(&stack, SHOP, invoices_only(false)).await;
    assert_eq!(
        n(&tally(&again)["created"]) + n(&tally(&again)["updated"]),
        0,
        "{}",
        tally(&again)
    );
    assert_eq!(
        abaha.item(SHOP, Kind::Orders, invoice_id).unwrap()["abaha_order_id"],
        json!("A-900")
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_inv_2_an_invoice_of_a_pushed_order_updates_that_abaha_order() {
    invoice_of_a_pushed_order_comes_back_as_that_order(true).await;
}

#[tokio::test]
async fn r_inv_2_without_order_code_in_the_invoice_list_our_reference_still_links_it() {
    invoice_of_a_pushed_order_comes_back_as_that_order(false).await;
}

#[tokio::test]
async fn r_inv_2_3_a_resync_and_the_overlap_reread_create_nothing_new() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let abaha = stack.abaha.as_ref().unwrap();
    // GIVEN a sale made just now, so the next incremental run's overlap window holds it
    let kv = stack.kiotviet.as_ref().unwrap();
    let product = kv.product_ids()[0];
    let fresh = kv
        .add_invoice(sandbox::kiotviet::NewInvoice {
            lines: vec![LineInput {
                product_id: product,
                quantity: 2.0,
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    let first = sync(&stack, SHOP, json!({"full": true})).await;
    assert_eq!(first["state"], json!("succeeded"), "{first}");
    let orders = abaha.items(SHOP, Kind::Orders);
    let counts = abaha.counts(Kind::Orders);
    assert!(n(&tally(&first)["created"]) > 0);

    // WHEN the shop syncs again (incremental: the overlap window is read again)
    let second = sync(&stack, SHOP, json!({})).await;
    // THEN the re-read invoices are all unchanged and nothing reaches Abaha
    let t = tally(&second);
    assert!(
        n(&t["read"]) > 0 && n(&t["unchanged"]) > 0,
        "the overlap window was re-read: {t}"
    );
    assert!(abaha.item(SHOP, Kind::Orders, fresh).is_some());
    assert_eq!(
        (n(&t["created"]), n(&t["updated"]), n(&t["failed"])),
        (0, 0, 0),
        "{t}"
    );
    assert_eq!(abaha.counts(Kind::Orders), counts);
    // AND a full re-sync (history re-read from the start) changes nothing either
    let third = sync(&stack, SHOP, invoices_only(true)).await;
    let t = tally(&third);
    assert_eq!((n(&t["created"]), n(&t["updated"])), (0, 0), "{t}");
    assert_eq!(abaha.items(SHOP, Kind::Orders), orders);
    stack.stop().await;
}

#[tokio::test]
async fn r_inv_3_an_invoice_edited_in_kiotviet_after_the_sync_is_updated_in_abaha() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let kv = stack.kiotviet.as_ref().unwrap();
    let abaha = stack.abaha.as_ref().unwrap();
    let m = menu(&stack);
    sync(&stack, SHOP, invoices_only(false)).await;
    let inv = latest_completed(&stack);
    let id = inv["id"].as_i64().unwrap();
    let before = abaha.item(SHOP, Kind::Orders, id).expect("synced");

    // WHEN the till edits the invoice's lines after the sync
    let edits = InvoiceEdits {
        lines: Some(vec![LineInput {
            product_id: m[1].kiotviet_id,
            quantity: 4.0,
            price: Some(m[1].price),
            ..Default::default()
        }]),
        ..InvoiceEdits::default()
    };
    kv.edit_invoice(id, edits).unwrap();
    let report = sync(&stack, SHOP, invoices_only(false)).await;

    // THEN that Abaha order is updated in place, and nothing else moves
    let t = tally(&report);
    assert_eq!((n(&t["updated"]), n(&t["created"])), (1, 0), "{t}");
    let after = abaha.item(SHOP, Kind::Orders, id).unwrap();
    assert_eq!(after["abaha_id"], before["abaha_id"]);
    assert_eq!(after["lines"].as_array().unwrap().len(), 1);
    assert_eq!(after["lines"][0]["quantity"].as_f64(), Some(4.0));
    assert_eq!(
        after["total"].as_f64(),
        kv.invoice(id).unwrap()["total"].as_f64()
    );
    assert_ne!(after["total"], before["total"], "{before} → {after}");
    stack.stop().await;
}

#[tokio::test]
async fn r_inv_1_a_completed_invoice_cancelled_later_is_a_manual_action_once() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    connect(&stack, SHOP).await;
    let kv = stack.kiotviet.as_ref().unwrap();
    let abaha = stack.abaha.as_ref().unwrap();
    sync(&stack, SHOP, invoices_only(false)).await;
    let inv = latest_completed(&stack);
    let id = inv["id"].as_i64().unwrap();
    let synced = abaha.item(SHOP, Kind::Orders, id).expect("synced");

    // WHEN KiotViet cancels the invoice after it was synced as completed
    kv.set_invoice_status(id, 2).unwrap();
    let report = sync(&stack, SHOP, invoices_only(false)).await;

    // THEN the report asks the owner to cancel the Abaha order by hand; Abaha is not changed
    let actions: Vec<&Value> = report["manual_actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == json!("cancel_order_in_abaha"))
        .collect();
    assert_eq!(actions.len(), 1, "{report}");
    assert_eq!(actions[0]["kiotviet_id"], json!(id));
    assert_eq!(actions[0]["abaha_id"], synced["abaha_id"]);
    assert!(
        actions[0]["message"]
            .as_str()
            .unwrap()
            .contains(inv["code"].as_str().unwrap())
    );
    assert!(n(&tally(&report)["skipped"]["cancelled"]) >= 1);
    assert_eq!(abaha.item(SHOP, Kind::Orders, id).unwrap(), synced);

    // AND the next re-read of the same invoice does not report it again
    let next = sync(&stack, SHOP, invoices_only(false)).await;
    assert!(
        next["manual_actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kiotviet_id"] != json!(id)),
        "{next}"
    );
    stack.stop().await;
}
