//! Customer push Abaha → KiotViet FnB and its meeting with the customer pull, end to end
//! (R-CUS-2, R-CUS-3): matched by ID map, then exact phone, else created; idempotent; no
//! ping-pong between the two directions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod support;

use e2e_tests::{Api, StackOptions, connection_body, sync};
use futures::future::join_all;
use sandbox::abaha::Kind;
use sandbox::kiotviet::NewCustomer;
use serde_json::{Value, json};
use support::{SHOP, code_of, kv_orders, menu, order, push, shop_with_menu};

fn customer(id: &str, phone: &str) -> Value {
    json!({"id": id, "name": "Lê Thị Hoa", "phone": phone, "email": "hoa@example.com",
           "address": "12 Pasteur", "gender": "female", "birth_date": "1990-04-30"})
}

async fn push_customer(api: &Api, body: &Value) -> e2e_tests::Answer {
    api.post(&format!("/v1/shops/{SHOP}/customers"), body.clone())
        .await
}

/// KiotViet customers (any, seeded or created) whose phone is exactly `phone`.
fn kv_customers_with_phone(stack: &e2e_tests::Stack, phone: &str) -> Vec<Value> {
    let kv = stack.kiotviet.as_ref().unwrap();
    kv.customer_ids()
        .into_iter()
        .filter_map(|id| kv.customer(id))
        .filter(|c| {
            c["contactNumber"]
                .as_str()
                .map(|p| p.chars().filter(char::is_ascii_digit).collect::<String>())
                .as_deref()
                == Some(phone)
        })
        .collect()
}

#[tokio::test]
async fn r_cus_3_a_customer_pushed_twice_exists_once_in_kiotviet() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let c = customer("U-1", "0977000111");
    // WHEN a new Abaha customer is pushed THEN it is created in KiotViet with its fields
    let first = push_customer(&api, &c).await;
    assert_eq!(
        (first.status, first.body["status"].clone()),
        (201, json!("created")),
        "{}",
        first.body
    );
    let id = first.body["kiotviet_customer_id"].as_i64().unwrap();
    let kvc = stack.kiotviet.as_ref().unwrap().customer(id).unwrap();
    assert_eq!(
        (
            kvc["name"].as_str(),
            kvc["email"].as_str(),
            kvc["gender"].as_bool()
        ),
        (Some("Lê Thị Hoa"), Some("hoa@example.com"), Some(false))
    );
    assert!(first.body["kiotviet_code"].is_string());
    // AND pushed again unchanged it is not touched
    let puts_before = stack
        .kiotviet
        .as_ref()
        .unwrap()
        .stats()
        .requests
        .get("PUT /customers/{id}");
    let second = push_customer(&api, &c).await;
    assert_eq!(
        (second.status, second.body["status"].clone()),
        (200, json!("unchanged")),
        "{}",
        second.body
    );
    assert_eq!(second.body["kiotviet_customer_id"], json!(id));
    assert_eq!(
        stack
            .kiotviet
            .as_ref()
            .unwrap()
            .stats()
            .requests
            .get("PUT /customers/{id}"),
        puts_before
    );
    // AND KiotViet holds the customer once
    assert_eq!(kv_customers_with_phone(&stack, "0977000111").len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_3_concurrent_pushes_of_a_new_customer_create_it_once() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    stack
        .kiotviet
        .as_ref()
        .unwrap()
        .set_faults(sandbox::Faults {
            latency_ms: 100,
            ..Default::default()
        });
    let c = customer("U-2", "0977000222");
    let answers = join_all((0..8).map(|_| push_customer(&api, &c))).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(
        created,
        1,
        "{:?}",
        answers
            .iter()
            .map(|a| (a.status, a.body.clone()))
            .collect::<Vec<_>>()
    );
    for a in &answers {
        assert!(matches!(a.status, 200 | 201 | 409), "{}", a.body);
    }
    assert_eq!(kv_customers_with_phone(&stack, "0977000222").len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_3_an_update_in_abaha_changes_the_kiotviet_customer() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let mut c = customer("U-3", "0977000333");
    let id = push_customer(&api, &c).await.body["kiotviet_customer_id"]
        .as_i64()
        .unwrap();
    // WHEN the customer changes name and email in Abaha
    c["name"] = json!("Lê Thị Hoa (chị Hoa)");
    c["email"] = json!("hoa.le@example.com");
    let a = push_customer(&api, &c).await;
    // THEN the KiotViet customer is updated, not another one created
    assert_eq!(
        (a.status, a.body["status"].clone()),
        (200, json!("updated")),
        "{}",
        a.body
    );
    assert_eq!(a.body["kiotviet_customer_id"], json!(id));
    let kvc = stack.kiotviet.as_ref().unwrap().customer(id).unwrap();
    assert_eq!(kvc["name"], json!("Lê Thị Hoa (chị Hoa)"));
    assert_eq!(kvc["email"], json!("hoa.le@example.com"));
    assert_eq!(kv_customers_with_phone(&stack, "0977000333").len(), 1);
    // AND the same change again is unchanged
    assert_eq!(
        push_customer(&api, &c).await.body["status"],
        json!("unchanged")
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_2_a_phone_that_only_contains_the_pushed_one_is_not_a_match() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    // GIVEN KiotViet customers whose phones contain the pushed phone (KiotViet's search matches
    // them), and one with exactly the phone another push writes with a country prefix
    let longer = kv
        .add_customer(NewCustomer {
            name: Some("Khách khác".into()),
            contact_number: Some("09880001234".into()),
            ..Default::default()
        })
        .unwrap();
    let prefixed = kv
        .add_customer(NewCustomer {
            name: Some("Khách khác 2".into()),
            contact_number: Some("10988000123".into()),
            ..Default::default()
        })
        .unwrap();
    let same = kv
        .add_customer(NewCustomer {
            name: Some("Phạm Minh".into()),
            contact_number: Some("0988000555".into()),
            ..Default::default()
        })
        .unwrap();

    // WHEN a customer with phone 0988000123 is pushed THEN neither partial match is taken
    let a = push_customer(&api, &customer("U-4", "0988000123")).await;
    assert_eq!(
        (a.status, a.body["status"].clone()),
        (201, json!("created")),
        "{}",
        a.body
    );
    let new_id = a.body["kiotviet_customer_id"].as_i64().unwrap();
    assert!(new_id != longer && new_id != prefixed);
    assert_eq!(
        kv.customer(longer).unwrap()["name"],
        json!("Khách khác"),
        "the partial match is untouched"
    );

    // AND an exact phone (any spelling) is matched, linked and updated, not duplicated
    let b = push_customer(&api, &customer("U-5", "+84 988 000 555")).await;
    assert_eq!(
        (b.status, b.body["status"].clone()),
        (200, json!("updated")),
        "{}",
        b.body
    );
    assert_eq!(b.body["kiotviet_customer_id"], json!(same));
    assert_eq!(kv_customers_with_phone(&stack, "0988000555").len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_2_a_phone_kiotviet_stores_with_spaces_or_dots_is_matched_not_created_again() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    // GIVEN KiotViet customers whose phones the till stored with spaces and with dots
    let spaced = kv
        .add_customer(NewCustomer {
            name: Some("Đỗ Lan".into()),
            contact_number: Some("090 800 1234".into()),
            ..Default::default()
        })
        .unwrap();
    let dotted = kv
        .add_customer(NewCustomer {
            name: Some("Hồ Nam".into()),
            contact_number: Some("0908.002.345".into()),
            ..Default::default()
        })
        .unwrap();

    // WHEN Abaha pushes customers with those numbers, spelt its own way
    let a = push_customer(&api, &customer("U-7", "0908001234")).await;
    let b = push_customer(&api, &customer("U-8", "+84 908 002 345")).await;

    // THEN each is matched to the existing KiotViet customer and linked, none created again
    for (answer, id) in [(&a, spaced), (&b, dotted)] {
        assert_eq!(
            (answer.status, answer.body["status"].clone()),
            (200, json!("updated")),
            "{}",
            answer.body
        );
        assert_eq!(answer.body["kiotviet_customer_id"], json!(id));
    }
    assert!(
        kv.created_customers().is_empty(),
        "{:?}",
        kv.created_customers()
    );
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_2_an_order_uses_the_mapped_customer_before_any_phone_search() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    // GIVEN Abaha customer U-6 already pushed (so it is in the ID map)
    let mapped = push_customer(&api, &customer("U-6", "0977000666"))
        .await
        .body["kiotviet_customer_id"]
        .as_i64()
        .unwrap();
    // AND another KiotViet customer has the phone the order now carries
    let other = kv
        .add_customer(NewCustomer {
            name: Some("Số cũ".into()),
            contact_number: Some("0977000777".into()),
            ..Default::default()
        })
        .unwrap();
    let searches = kv.stats().requests.get("GET /customers");

    // WHEN U-6 orders with the new phone
    let mut o = order("A-800", "DH800", &menu(&stack));
    o["customer"] = json!({"id": "U-6", "name": "Lê Thị Hoa", "phone": "0977000777"});
    let a = push(&api, &o).await;
    assert_eq!(a.status, 201, "{}", a.body);

    // THEN the KiotViet order is on the mapped customer, found without a phone search
    assert_eq!(kv_orders(&stack)[0]["customerId"], json!(mapped));
    assert_ne!(mapped, other);
    assert_eq!(kv.stats().requests.get("GET /customers"), searches);

    // AND a guest order (no Abaha id) with a known phone lands on that KiotViet customer
    let mut guest = order("A-801", "DH801", &menu(&stack));
    guest["customer"] = json!({"id": null, "name": "Khách lẻ", "phone": "0977 000 777"});
    assert_eq!(push(&api, &guest).await.status, 201);
    assert_eq!(kv_orders(&stack)[1]["customerId"], json!(other));
    stack.stop().await;
}

#[tokio::test]
async fn r_cus_3_a_pull_right_after_a_push_sends_nothing_back_and_an_echo_changes_nothing() {
    let Some((stack, _)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let kv = stack.kiotviet.as_ref().unwrap();
    let abaha = stack.abaha.as_ref().unwrap();
    let first = sync(
        &stack,
        SHOP,
        json!({"entities": ["customers"], "full": true}),
    )
    .await;
    assert_eq!(first["state"], json!("succeeded"), "{first}");
    let counts_before = abaha.counts(Kind::Customers);
    let items_before = abaha.items(SHOP, Kind::Customers).len();

    // WHEN a new Abaha customer is pushed and the customers are pulled right after
    let pushed = push_customer(&api, &customer("U-9", "0977000999")).await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let report = sync(&stack, SHOP, json!({"entities": ["customers"]})).await;

    // THEN the pull read it but sent nothing back to Abaha
    let tally = &report["entities"]["customers"];
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    assert!(
        tally["unchanged"].as_u64().unwrap() >= 1,
        "the pull did see the new customer: {tally}"
    );
    assert_eq!(
        (tally["created"].as_u64(), tally["updated"].as_u64()),
        (Some(0), Some(0)),
        "{tally}"
    );
    assert_eq!(abaha.counts(Kind::Customers), counts_before);
    assert_eq!(abaha.items(SHOP, Kind::Customers).len(), items_before);

    // AND Abaha echoing a pulled customer back (its customer webhook) changes nothing in KiotViet
    let pulled = abaha
        .items(SHOP, Kind::Customers)
        .into_iter()
        .find(|c| c["email"].is_string() && c["address"].is_string())
        .expect("a pulled customer with email and address");
    let echo = json!({"id": pulled["abaha_id"], "name": pulled["name"], "phone": pulled["phone"],
                      "email": pulled["email"], "address": pulled["address"], "gender": pulled["gender"],
                      "birth_date": pulled["birth_date"]});
    let before = kv.stats().requests;
    let a = push_customer(&api, &echo).await;
    assert_eq!(
        (a.status, a.body["status"].clone()),
        (200, json!("unchanged")),
        "{}",
        a.body
    );
    assert_eq!(a.body["kiotviet_customer_id"], pulled["kiotviet_id"]);
    // AND it changed nothing there: its one API call reads the KiotViet code the answer names
    assert_eq!(a.body["kiotviet_code"], pulled["code"], "{}", a.body);
    let after = kv.stats().requests;
    assert_eq!(after.gets - before.gets, 1, "{after:?}");
    assert_eq!(
        after.get("GET /customers/{id}") - before.get("GET /customers/{id}"),
        1
    );
    for write in ["POST /customers", "PUT /customers/{id}"] {
        assert_eq!(after.get(write), before.get(write), "{write}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn customer_push_guards_phone_required_switched_off_and_the_shop_token() {
    let Some((stack, token)) = shop_with_menu(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    for bad in [
        json!({"id": "U-1", "name": "Không số"}),
        json!({"id": "U-1", "phone": "123"}),
        json!({"phone": "0977000111"}),
    ] {
        let a = push_customer(&api, &bad).await;
        assert_eq!(
            (a.status, code_of(&a)),
            (422, Some("validation_failed")),
            "{bad}: {}",
            a.body
        );
    }
    let a = api
        .post("/v1/shops/nobody/customers", customer("U-1", "0977000111"))
        .await;
    assert_eq!((a.status, code_of(&a)), (404, Some("unknown_shop")));
    assert!(
        stack
            .kiotviet
            .as_ref()
            .unwrap()
            .created_customers()
            .is_empty()
    );

    let shop = api.with_token(Some(&token));
    assert_eq!(
        push_customer(&shop, &customer("U-1", "0977000111"))
            .await
            .status,
        201
    );

    let mut off = connection_body(&stack);
    off["sync"]["customers"] = json!(false);
    assert_eq!(
        api.put(&format!("/v1/shops/{SHOP}/connection"), off)
            .await
            .status,
        200
    );
    let a = push_customer(&api, &customer("U-2", "0977000222")).await;
    assert_eq!(
        (a.status, code_of(&a)),
        (422, Some("customers_sync_disabled")),
        "{}",
        a.body
    );
    assert_eq!(
        stack.kiotviet.as_ref().unwrap().created_customers().len(),
        1
    );
    stack.stop().await;
}
