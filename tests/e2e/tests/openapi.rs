//! The OpenAPI documents (docs/openapi) and the drift guard that holds the code to them.
//!
//! Without moto: the documents are whole, the guard fails on a renamed field, the mapping crate's
//! wire types serialize into both documents, and the Abaha sandbox answers as documented.
//! With moto: a full sync and both pushes stay inside both documents, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use chrono::{DateTime, NaiveDate};
use e2e_tests::contract::{Contract, abaha_sync_api, check_abaha_writes, escape, service_api};
use e2e_tests::{Api, StackOptions, connect, start, sync};
use mapping::abaha::{
    AttributeItem, CategoryItem, CustomerItem, Gender, OrderCustomer, OrderItem, OrderLine,
    PaymentItem, ProductItem, Upsert,
};
use sandbox::Faults;
use sandbox::abaha::{AbahaConfig, AbahaSim, Kind};
use serde_json::{Value, json};

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                out.push(r.to_string());
            }
            o.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn operations_with_responses(c: &Contract) -> Vec<(String, String, String, String)> {
    let mut out = vec![];
    for (method, template) in c.operations() {
        let at = format!(
            "/paths/{}/{}/responses",
            escape(&template),
            method.to_ascii_lowercase()
        );
        let (_, responses) = c.resolve(&at).expect("responses");
        for status in responses.as_object().expect("responses object").keys() {
            out.push((
                method.clone(),
                template.clone(),
                status.clone(),
                format!("{at}/{}", escape(status)),
            ));
        }
    }
    out
}

#[test]
fn both_documents_are_whole_every_ref_resolves_and_every_schema_compiles() {
    for c in [service_api(), abaha_sync_api()] {
        let mut all = vec![];
        refs(c.doc(), &mut all);
        assert!(
            all.len() > 20,
            "the documents share their shapes through $refs"
        );
        for r in all {
            let pointer = r.strip_prefix('#').expect("local refs only");
            assert!(c.doc().pointer(pointer).is_some(), "dangling $ref {r}");
        }
        for name in c.doc()["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
        {
            // A schema that does not compile cannot hold anything; validating `null` compiles it.
            if let Err(e) = c.validate_component(name, &Value::Null) {
                assert!(!e.contains("does not compile"), "{e}");
            }
        }
    }
}

#[test]
fn every_error_answer_of_both_apis_has_the_one_error_shape() {
    for c in [service_api(), abaha_sync_api()] {
        for (method, template, status, at) in operations_with_responses(c) {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let (resolved, _) = c.resolve(&at).expect("response");
            let schema = format!("{resolved}/content/application~1json/schema");
            let bare = json!({"message": "Something failed."});
            assert!(
                c.validate(&schema, &bare).is_err(),
                "{method} {template} {status} accepts an answer without the error shape"
            );
            let no_details = json!({"error": {"code": "x", "message": "Something failed."}});
            assert!(
                c.validate(&schema, &no_details).is_err(),
                "{method} {template} {status}: details is required"
            );
        }
    }
}

#[test]
fn the_service_api_documents_auth_errors_limits_and_retry_after() {
    let c = service_api();
    let ops = operations_with_responses(c);
    for (method, template) in c.operations() {
        let has = |s: &str| {
            ops.iter()
                .any(|(m, t, st, _)| *m == method && *t == template && st == s)
        };
        let open = template.starts_with("/v1/kiotviet/webhooks/");
        if !open {
            assert!(
                has("401") && has("403"),
                "{method} {template} documents 401 and 403"
            );
        }
        if method == "PUT" || method == "POST" {
            assert!(has("413"), "{method} {template} documents 413");
        }
    }
    for (route, status) in [
        ("PUT /v1/shops/{shop_id}/connection", "422"),
        ("PUT /v1/shops/{shop_id}/connection", "502"),
    ] {
        let (m, t) = route.split_once(' ').unwrap();
        assert!(
            ops.iter()
                .any(|(om, ot, s, _)| om == m && ot == t && s == status),
            "{route} {status}"
        );
    }
    // The codes of CONTRACTS §1 for the connection routes are named in the document.
    let put = serde_json::to_string(&c.doc()["paths"]["/v1/shops/{shop_id}/connection"]).unwrap()
        + &serde_json::to_string(&c.doc()["components"]).unwrap();
    for code in [
        "unsupported_account_type",
        "keep_app_product_status_required",
        "invalid_credentials",
        "unknown_retailer",
        "unknown_branch",
        "validation_failed",
        "kiotviet_unavailable",
        "unknown_shop",
        "unauthorized",
        "forbidden",
        "payload_too_large",
        "method_not_allowed",
    ] {
        assert!(put.contains(code), "{code} is documented");
    }
    // 409 push_in_progress carries Retry-After, and the guard insists on it.
    let conflict =
        json!({"error": {"code": "push_in_progress", "message": "Being pushed.", "details": {}}});
    let path = "/v1/shops/s1/orders";
    assert!(
        c.check_answer(
            "POST",
            path,
            409,
            &[("retry-after".into(), "3".into())],
            &conflict
        )
        .is_ok()
    );
    let e = c
        .check_answer("POST", path, 409, &[], &conflict)
        .unwrap_err();
    assert!(e.contains("Retry-After"), "{e}");
}

fn connection_answer() -> Value {
    json!({
        "connection": {"shop_id": "s1", "account_type": "fnb", "retailer": "testfnbz15xyz", "client_id": "c",
                       "branch_id": 233443, "sync": {"products": true, "customers": true, "orders": true},
                       "keep_app_product_status": true, "invoice_history_days": 30, "secret_set": true,
                       "webhooks_active": false, "created_at": "2026-11-29T09:00:00+07:00",
                       "updated_at": "2026-11-29T09:00:00+07:00"},
        "branches": [{"id": 233443, "name": "Chi nhánh trung tâm"}],
        "shop_token": "t".repeat(43),
    })
}

#[test]
fn the_guard_fails_when_a_field_is_renamed_or_a_secret_or_status_slips_in() {
    let c = service_api();
    let path = "/v1/shops/s1/connection";
    // GIVEN an answer exactly as CONTRACTS §1 has it THEN it passes
    c.check_answer("PUT", path, 200, &[], &connection_answer())
        .expect("the contract's own answer");
    // WHEN a field is renamed THEN the guard fails and names it
    let mut renamed = connection_answer();
    let v = renamed["connection"]
        .as_object_mut()
        .unwrap()
        .remove("secret_set")
        .unwrap();
    renamed["connection"]["secretSet"] = v;
    let e = c.check_answer("PUT", path, 200, &[], &renamed).unwrap_err();
    assert!(e.contains("secret_set"), "{e}");
    // … and when the secret comes back (R-CON-4)
    let mut leaky = connection_answer();
    leaky["connection"]["client_secret"] = json!("demo-secret");
    assert!(c.check_answer("PUT", path, 200, &[], &leaky).is_err());
    // … and when GET shows the shop token
    let mut token = connection_answer();
    token.as_object_mut().unwrap().remove("branches");
    assert!(c.check_answer("GET", path, 200, &[], &token).is_err());
    // … and for a status the route does not document, an undocumented error code, a bad time
    let err = json!({"error": {"code": "teapot", "message": "No.", "details": {}}});
    assert!(
        c.check_answer("PUT", path, 418, &[], &err)
            .unwrap_err()
            .contains("does not document")
    );
    assert!(c.check_answer("PUT", path, 422, &[], &err).is_err());
    let mut naive = connection_answer();
    naive["connection"]["created_at"] = json!("2026-11-29 09:00:00");
    assert!(c.check_answer("PUT", path, 200, &[], &naive).is_err());
    // … and for unknown paths and methods, which answer only 404 / 405 (with Allow)
    let nf =
        json!({"error": {"code": "not_found", "message": "There is no route.", "details": {}}});
    assert!(c.check_answer("GET", "/v1/nope", 404, &[], &nf).is_ok());
    assert!(
        c.check_answer("GET", "/v1/nope", 200, &[], &json!({}))
            .is_err()
    );
    let na = json!({"error": {"code": "method_not_allowed", "message": "Use PUT.", "details": {}}});
    assert!(
        c.check_answer(
            "PATCH",
            path,
            405,
            &[("allow".into(), "PUT, GET, DELETE".into())],
            &na
        )
        .is_ok()
    );
    assert!(c.check_answer("PATCH", path, 405, &[], &na).is_err());
    // Requests are checked when they were accepted: a renamed switch must not be.
    let body = json!({"account_type": "fnb", "keep_app_product_statu": true});
    assert!(c.check_request("PUT", path, Some(&body), 200).is_err());
    assert!(c.check_request("PUT", path, Some(&body), 422).is_ok());
}

fn product() -> ProductItem {
    ProductItem {
        kiotviet_id: 101,
        code: Some("CF01".into()),
        name: "Cà phê sữa".into(),
        full_name: Some("Cà phê sữa - Lớn".into()),
        category_kiotviet_id: Some(11),
        unit: Some("Ly".into()),
        description: None,
        images: vec!["https://cdn.example/cf01.jpg".into()],
        attributes: vec![AttributeItem {
            name: "Size".into(),
            value: "Lớn".into(),
        }],
        master_kiotviet_id: Some(100),
        is_topping: false,
        topping_kiotviet_ids: vec![201],
        price: 35000.0,
        list_price: 35000.0,
        stock: None,
    }
}

fn batches() -> Vec<(Kind, Value)> {
    let order = OrderItem {
        kiotviet_id: 9001,
        invoice_code: Some("HD000001".into()),
        kiotviet_order_code: Some("DH000001".into()),
        abaha_order_id: Some("A-1001".into()),
        status: "completed".into(),
        purchased_at: Some(DateTime::parse_from_rfc3339("2026-11-29T12:05:00+07:00").unwrap()),
        customer: Some(OrderCustomer {
            kiotviet_id: Some(77),
            phone: Some("0987654321".into()),
            name: None,
        }),
        lines: vec![OrderLine {
            kiotviet_product_id: 101,
            abaha_product_id: Some("P-9".into()),
            name: Some("Cà phê sữa".into()),
            quantity: 2.0,
            price: 35000.0,
            discount: 0.0,
            note: None,
        }],
        subtotal: 70000.0,
        discount: 0.0,
        total: 85000.0,
        paid: 85000.0,
        payments: vec![PaymentItem {
            method: Some("Cash".into()),
            amount: 85000.0,
        }],
    };
    let customer = CustomerItem {
        kiotviet_id: 77,
        code: Some("KH000077".into()),
        phone: "0987654321".into(),
        name: "Khách".into(),
        email: None,
        address: None,
        gender: Some(Gender::Female),
        birth_date: NaiveDate::from_ymd_opt(1995, 6, 1),
    };
    let root = CategoryItem {
        kiotviet_id: 11,
        name: "Cà phê".into(),
        parent_kiotviet_id: None,
        rank: 0,
    };
    let to = |v: serde_json::Result<Value>| v.expect("wire types serialize");
    vec![
        (
            Kind::Categories,
            to(serde_json::to_value(Upsert { items: vec![root] })),
        ),
        (
            Kind::Products,
            to(serde_json::to_value(Upsert {
                items: vec![product()],
            })),
        ),
        (
            Kind::Customers,
            to(serde_json::to_value(Upsert {
                items: vec![customer],
            })),
        ),
        (
            Kind::Orders,
            to(serde_json::to_value(Upsert { items: vec![order] })),
        ),
    ]
}

#[test]
fn the_mapping_wire_types_serialize_into_the_abaha_sync_api_document() {
    let c = abaha_sync_api();
    for (kind, body) in batches() {
        let path = format!("/v1/shops/s1/{}:upsert", kind.as_str());
        c.check_request("POST", &path, Some(&body), 200)
            .unwrap_or_else(|e| panic!("mapping::abaha {kind:?} drifted: {e}"));
    }
    // A renamed item field fails (full_name → fullName), and so does a visibility field (R-PRD-3).
    let mut p = json!({"items": [product()]});
    let v = p["items"][0]
        .as_object_mut()
        .unwrap()
        .remove("full_name")
        .unwrap();
    p["items"][0]["fullName"] = v;
    let e = c
        .check_request("POST", "/v1/shops/s1/products:upsert", Some(&p), 200)
        .unwrap_err();
    assert!(e.contains("full_name"), "{e}");
    let mut hidden = json!({"items": [product()]});
    hidden["items"][0]["visible"] = json!(false);
    assert!(
        c.check_request("POST", "/v1/shops/s1/products:upsert", Some(&hidden), 200)
            .is_err()
    );
    let too_many = json!({"items": vec![product(); 101]});
    assert!(
        c.check_request("POST", "/v1/shops/s1/products:upsert", Some(&too_many), 200)
            .is_err()
    );
}

#[test]
fn the_mapping_service_api_types_serialize_into_the_service_api_document() {
    let c = service_api();
    let report = mapping::api::RunReport {
        run_id: "run-1".into(),
        state: mapping::api::RunState::Partial,
        started_at: Some("2026-11-29T02:00:00Z".parse().unwrap()),
        finished_at: None,
        manual_actions: vec![mapping::api::ManualAction::delete_product_in_abaha(
            101,
            Some("prd-1".into()),
            Some("Trà"),
        )],
        ..Default::default()
    };
    let mut report = serde_json::to_value(report).unwrap();
    report["entities"]["products"] = json!({"state": "succeeded", "created": 1, "updated": 0, "unchanged": 0,
        "failed": 0, "skipped": {"inactive": 1}, "api_calls": 2, "removed_in_kiotviet": 1});
    c.validate_component("RunReport", &report)
        .expect("RunReport");
    let err = serde_json::to_value(mapping::api::ErrorBody::new(
        "unknown_shop",
        "No such shop.",
    ))
    .unwrap();
    c.validate_component("Error", &err).expect("ErrorBody");
    let answer: mapping::api::ConnectionAnswer =
        serde_json::from_value(connection_answer()).unwrap();
    c.validate_component("ConnectionAnswer", &serde_json::to_value(answer).unwrap())
        .expect("ConnectionAnswer");
    let order: Value = json!({ "id": "A-1001", "code": "DH1001", "status": "approved",
        "created_at": "2026-11-29T09:00:00+07:00", "delivery_time": "2026-11-29T12:00:00+07:00",
        "note": "Giao cổng sau",
        "customer": {"id": "U-77", "name": "Nguyễn Văn A", "phone": "0987654321", "email": null},
        "shipping_address": {"name": "Nguyễn Văn A", "phone": "0987654321", "address": "1 Lê Lợi",
                             "ward": "Bến Nghé", "district": "Quận 1", "province": "Hồ Chí Minh"},
        "lines": [{"product_id": "P-9", "quantity": 2, "price": 35000, "note": "ít đá"}],
        "shipping_fee": 15000, "discount": 0, "total": 85000 });
    c.validate_component("AbahaOrder", &order)
        .expect("the contract's order example");
    let typed: mapping::api::AbahaOrder = serde_json::from_value(order).unwrap();
    c.validate_component("AbahaOrder", &serde_json::to_value(typed).unwrap())
        .expect("AbahaOrder round trip");
}

#[tokio::test]
async fn the_abaha_sandbox_answers_as_the_document_says() {
    let c = abaha_sync_api();
    let sim = AbahaSim::start(AbahaConfig {
        known_shops: Some(vec!["s1".into()]),
        ..AbahaConfig::default()
    })
    .await
    .expect("sandbox");
    let http = reqwest::Client::new();
    let post = |path: String, token: Option<String>, body: Value| {
        let req = http.post(format!("{}{path}", sim.url())).json(&body);
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move {
            let resp = req.send().await.expect("sandbox answers");
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, headers, body)
        }
    };
    let token = Some(sim.token());
    let mut seen = vec![];
    for (kind, body) in batches() {
        let path = format!("/v1/shops/s1/{}:upsert", kind.as_str());
        let (status, headers, answer) = post(path.clone(), token.clone(), body).await;
        assert_eq!(status, 200, "{answer}");
        c.check_answer("POST", &path, status, &headers, &answer)
            .unwrap_or_else(|e| panic!("{e}"));
        seen.push(status);
    }
    let path = "/v1/shops/s1/customers:upsert".to_string();
    let cases = vec![
        // A per-item error keeps the batch: 200 with the error in place.
        (
            token.clone(),
            json!({"items": [{"kiotviet_id": 5, "name": "A"}]}),
            200,
        ),
        (None, json!({"items": []}), 401),
        (
            token.clone(),
            json!({"items": vec![json!({"kiotviet_id": 1}); 101]}),
            422,
        ),
        (token.clone(), json!({"things": []}), 422),
    ];
    for (t, body, want) in cases {
        let (status, headers, answer) = post(path.clone(), t, body).await;
        assert_eq!(status, want, "{answer}");
        c.check_answer("POST", &path, status, &headers, &answer)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (status, headers, answer) = post(
        "/v1/shops/nobody/customers:upsert".into(),
        token.clone(),
        json!({"items": []}),
    )
    .await;
    assert_eq!(status, 404);
    c.check_answer(
        "POST",
        "/v1/shops/nobody/customers:upsert",
        status,
        &headers,
        &answer,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for faults in [
        Faults {
            p_429: 1.0,
            retry_after_secs: 2,
            ..Faults::default()
        },
        Faults {
            p_5xx: 1.0,
            ..Faults::default()
        },
    ] {
        sim.set_faults(faults);
        let (status, headers, answer) =
            post(path.clone(), token.clone(), json!({"items": []})).await;
        assert!(status == 429 || status >= 500, "{status}");
        c.check_answer("POST", &path, status, &headers, &answer)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test]
async fn a_full_sync_and_both_pushes_stay_inside_both_documents() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let shop = "shop-contract";
    let api = Api::admin(&stack);
    // Every call below goes through `Api`, which checks it against service-api.yaml.
    connect(&stack, shop).await;
    assert_eq!(
        api.get(&format!("/v1/shops/{shop}/connection"))
            .await
            .status,
        200
    );
    let report = sync(&stack, shop, json!({"full": true})).await;
    assert_eq!(report["state"], json!("succeeded"), "{report}");
    // `sync` checked what reached the Abaha sandbox; make sure that was not nothing.
    let abaha = stack.abaha.as_ref().expect("Abaha sandbox");
    let checked = check_abaha_writes(abaha, shop).unwrap_or_else(|e| panic!("{e}"));
    for kind in [Kind::Categories, Kind::Products, Kind::Customers] {
        assert!(
            !abaha.stored(shop, kind).is_empty(),
            "{kind:?} were written"
        );
    }
    assert!(checked >= 10, "only {checked} items checked");

    let product = abaha
        .stored(shop, Kind::Products)
        .into_iter()
        .find(|p| {
            p.item["is_topping"] == json!(false)
                && p.item["price"].as_f64().is_some_and(|x| x > 0.0)
        })
        .expect("a sellable product");
    let order = json!({"id": "A-contract-1", "code": "DH-C1", "status": "approved",
        "created_at": "2026-11-29T09:00:00+07:00", "delivery_time": null, "note": null,
        "customer": {"id": "U-1", "name": "Nguyễn Văn A", "phone": "0987000111", "email": null},
        "lines": [{"product_id": product.abaha_id, "quantity": 1, "price": product.item["price"], "note": null}],
        "shipping_fee": 0, "discount": 0, "total": product.item["price"]});
    let pushed = api
        .post(&format!("/v1/shops/{shop}/orders"), order.clone())
        .await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let replay = api
        .post(&format!("/v1/shops/{shop}/orders"), order.clone())
        .await;
    assert_eq!(
        (replay.status, &replay.body["replayed"]),
        (200, &json!(true)),
        "{}",
        replay.body
    );
    let mut cancel = order;
    cancel["status"] = json!("cancelled");
    assert_eq!(
        api.post(&format!("/v1/shops/{shop}/orders"), cancel)
            .await
            .status,
        202
    );
    let customer = json!({"id": "U-contract-2", "name": "Trần Thị B", "phone": "0912000222", "email": null,
        "address": null, "gender": "female", "birth_date": "1990-01-31"});
    let c = api
        .post(&format!("/v1/shops/{shop}/customers"), customer)
        .await;
    assert!(c.status == 201 || c.status == 200, "{}", c.body);
    // The latest run now carries the manual action; the report validates as a whole.
    let latest = api.get(&format!("/v1/shops/{shop}/sync")).await;
    assert_eq!(latest.status, 200);
    // 405 names the allowed methods; unknown paths and webhooks answer in the error shape.
    let patch = api
        .call(
            "PATCH",
            &format!("/v1/shops/{shop}/connection"),
            Some(json!({})),
        )
        .await;
    assert_eq!(patch.status, 405);
    assert!(patch.headers.get("allow").is_some(), "405 carries Allow");
    assert_eq!(api.get("/v1/nope").await.status, 404);
    stack.stop().await;
}
