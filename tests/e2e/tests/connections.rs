//! Connections and the service API's guards, end to end: local stack on moto + KiotViet sandbox.
//! R-CON-1…4, CONTRACTS §1 error codes, 401/403, and the secret never leaving its seal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

use e2e_tests::{Api, StackOptions, connect, connection_body, start};
use serde_json::json;

const SHOP: &str = "shop-a";

#[tokio::test]
async fn r_con_3_saving_checks_live_answers_branches_and_a_shop_token_once() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    // GIVEN the sandbox shop's real credentials WHEN the connection is saved
    let a = api
        .put(
            &format!("/v1/shops/{SHOP}/connection"),
            connection_body(&stack),
        )
        .await;
    // THEN it is saved, the branches come back, and the shop token is shown once
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body["branches"].as_array().is_some_and(|b| b.len() >= 2),
        "{}",
        a.body
    );
    assert!(a.body["shop_token"].as_str().is_some_and(|t| t.len() >= 32));
    assert_eq!(a.body["connection"]["secret_set"], json!(true));
    assert!(a.body["connection"].get("client_secret").is_none());
    // AND reading it back never shows the secret nor the token
    let g = api.get(&format!("/v1/shops/{SHOP}/connection")).await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.body["connection"]["retailer"],
        connection_body(&stack)["retailer"]
    );
    assert!(!g.body.to_string().contains("demo-secret"));
    assert!(g.body.get("shop_token").is_none());
    // AND an update without the secret keeps the stored one and does not rotate the token
    let mut update = connection_body(&stack);
    update.as_object_mut().unwrap().remove("client_secret");
    update["sync"]["customers"] = json!(false);
    let u = api
        .put(&format!("/v1/shops/{SHOP}/connection"), update)
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["connection"]["sync"]["customers"], json!(false));
    assert!(u.body.get("shop_token").is_none());
    // AND a rotation shows a new token
    let r = api
        .put(
            &format!("/v1/shops/{SHOP}/connection?rotate_shop_token=true"),
            connection_body(&stack),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["shop_token"].is_string());
    stack.stop().await;
}

#[tokio::test]
async fn r_con_3_failed_checks_say_why_and_save_nothing() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let path = format!("/v1/shops/{SHOP}/connection");

    let mut wrong_secret = connection_body(&stack);
    wrong_secret["client_secret"] = json!("not-the-secret");
    let a = api.put(&path, wrong_secret).await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (422, Some("invalid_credentials")),
        "{}",
        a.body
    );
    assert!(!a.body.to_string().contains("not-the-secret"));

    let mut wrong_retailer = connection_body(&stack);
    wrong_retailer["retailer"] = json!("nosuchshop");
    let a = api.put(&path, wrong_retailer).await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (422, Some("unknown_retailer")),
        "{}",
        a.body
    );

    let mut wrong_branch = connection_body(&stack);
    wrong_branch["branch_id"] = json!(999);
    let a = api.put(&path, wrong_branch).await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (422, Some("unknown_branch")),
        "{}",
        a.body
    );
    assert!(
        a.body["error"]["details"]["branches"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    );

    // R-CON-2
    let mut status_off = connection_body(&stack);
    status_off["keep_app_product_status"] = json!(false);
    let a = api.put(&path, status_off).await;
    assert_eq!(
        a.body["error"]["code"],
        json!("keep_app_product_status_required")
    );
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not report")
    );

    // R-CON-1
    let mut retail = connection_body(&stack);
    retail["account_type"] = json!("retail");
    let a = api.put(&path, retail).await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (422, Some("unsupported_account_type"))
    );

    // Nothing of the above was saved.
    let g = api.get(&path).await;
    assert_eq!(
        (g.status, g.body["error"]["code"].as_str()),
        (404, Some("unknown_shop"))
    );
    stack.stop().await;
}

#[tokio::test]
async fn kiotviet_down_is_502_kiotviet_unavailable_not_bad_credentials() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let kv = stack.kiotviet.as_ref().unwrap();
    kv.set_faults(sandbox::Faults {
        p_5xx: 1.0,
        ..Default::default()
    });
    let a = Api::admin(&stack)
        .put(
            &format!("/v1/shops/{SHOP}/connection"),
            connection_body(&stack),
        )
        .await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (502, Some("kiotviet_unavailable")),
        "{}",
        a.body
    );
    stack.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_documented_error_shape_and_writes_nothing() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    let path = format!("/v1/shops/{SHOP}/connection");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "malformed_json"),
        (b"".to_vec(), 400, "malformed_json"),
        (br#"{"account_type": 5}"#.to_vec(), 422, "validation_failed"),
        (
            br#"{"account_type": "fnb", "branch_id": "x"}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            br#"{"account_type": "fnb", "surprise": true}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (br#"[1,2,3]"#.to_vec(), 422, "validation_failed"),
        (vec![b' '; 300 * 1024], 413, "payload_too_large"),
    ];
    for (body, status, code) in cases {
        let a = api.raw("PUT", &path, Some(body)).await;
        assert_eq!(a.status, status, "{}", a.body);
        assert_eq!(a.body["error"]["code"], json!(code), "{}", a.body);
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10)
        );
        assert!(a.body["error"]["details"].is_object());
    }
    assert_eq!(api.get(&path).await.status, 404);
    // Unknown routes and methods answer in the same shape.
    let a = api.get("/v1/nope").await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let a = api.call("PATCH", &path, Some(json!({}))).await;
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    stack.stop().await;
}

#[tokio::test]
async fn tokens_401_without_or_wrong_403_for_a_shop_token_elsewhere() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let admin = Api::admin(&stack);
    let shop_token = connect(&stack, SHOP).await;
    let path = format!("/v1/shops/{SHOP}/connection");

    let none = admin.with_token(None).get(&path).await;
    assert_eq!(
        (none.status, none.body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let wrong = admin.with_token(Some("nope")).get(&path).await;
    assert_eq!(wrong.status, 401);

    let shop = admin.with_token(Some(&shop_token));
    // A shop token may not read or change the connection, nor press Sync …
    assert_eq!(shop.get(&path).await.status, 403);
    assert_eq!(
        shop.post(&format!("/v1/shops/{SHOP}/sync"), json!({}))
            .await
            .status,
        403
    );
    // … nor push for another shop.
    connect(&stack, "shop-b").await;
    let other = shop
        .post(
            "/v1/shops/shop-b/orders",
            json!({"id": "A-1", "status": "approved", "lines": []}),
        )
        .await;
    assert_eq!(
        (other.status, other.body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    // Its own push route is open to it (the body is then checked: 422, not 401/403).
    let own = shop
        .post(
            &format!("/v1/shops/{SHOP}/orders"),
            json!({"id": "A-1", "status": "approved", "lines": []}),
        )
        .await;
    assert_eq!(own.status, 422, "{}", own.body);
    stack.stop().await;
}

#[tokio::test]
async fn r_con_4_the_secret_is_sealed_in_dynamodb_and_destroyed_on_disconnect() {
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let api = Api::admin(&stack);
    connect(&stack, SHOP).await;

    // Every attribute of every item, as stored: the secret must not be there in clear text.
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&stack.aws_endpoint)
        .load()
        .await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let scan = dynamo
        .scan()
        .table_name(&stack.service.settings.table_name)
        .send()
        .await
        .expect("scan");
    let dump = format!("{:?}", scan.items());
    assert!(dump.contains(SHOP), "the connection is stored");
    assert!(
        !dump.contains("demo-secret"),
        "the client secret is stored sealed only"
    );

    // DELETE: schedules stop (no connection), the secret goes with the record.
    let d = api.delete(&format!("/v1/shops/{SHOP}/connection")).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        api.get(&format!("/v1/shops/{SHOP}/connection"))
            .await
            .status,
        404
    );
    assert_eq!(
        api.delete(&format!("/v1/shops/{SHOP}/connection"))
            .await
            .status,
        404
    );
    stack.stop().await;
}
