//! What an idle scheduled tick costs and leaves behind (issue 16), end to end: tokens and secrets
//! kept per process, and the writes an idle run makes. R-SYN-1…3, R-SYN-5, R-SYN-6, R-CON-4.

use e2e_tests::{Api, StackOptions, connect, connection_body, start, sync};
use secrecy::SecretString;
use serde_json::json;

#[tokio::test]
async fn r_syn_6_incremental_runs_after_a_full_sync_ask_kiotviet_for_no_new_token() {
    // GIVEN a café connected and fully synced
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let kv = stack.kiotviet.as_ref().expect("KiotViet sandbox");
    connect(&stack, "idle-token").await;
    let full = sync(&stack, "idle-token", json!({"full": true})).await;
    assert_eq!(full["state"], "succeeded", "{full}");
    kv.reset_stats();
    // WHEN two incremental runs follow
    for _ in 0..2 {
        let run = sync(&stack, "idle-token", json!({})).await;
        assert_eq!(run["state"], "succeeded", "{run}");
    }
    // THEN neither asked KiotViet for a token: the one of the full sync is still valid
    assert_eq!(kv.stats().tokens_issued, 0);
}

#[tokio::test]
async fn r_con_4_a_changed_client_secret_is_used_at_once() {
    // GIVEN a café connected and fully synced (its secret and token now cached in the process)
    let Some(stack) = start(StackOptions::default()).await else {
        return;
    };
    let shop = "idle-secret";
    connect(&stack, shop).await;
    let full = sync(&stack, shop, json!({"full": true})).await;
    assert_eq!(full["state"], "succeeded", "{full}");
    // WHEN the stored connection's secret changes (to one KiotViet refuses)
    let svc = &stack.service;
    let mut conn = svc
        .store
        .get_connection(shop)
        .await
        .expect("store")
        .expect("connection");
    conn.sealed_secret = svc
        .sealer
        .seal(shop, &SecretString::from("not-the-secret".to_string()))
        .await
        .expect("sealed");
    svc.store.put_connection(&conn).await.expect("saved");
    let run = sync(&stack, shop, json!({})).await;
    // THEN the next run used it at once (not the cached secret or its token) and says so
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["errors"]
            .to_string()
            .contains("refused the Client ID and secret"),
        "{run}"
    );
    // AND once the right secret is saved again, the next run succeeds
    let saved = Api::admin(&stack)
        .put(
            &format!("/v1/shops/{shop}/connection"),
            connection_body(&stack),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let run = sync(&stack, shop, json!({})).await;
    assert_eq!(run["state"], "succeeded", "{run}");
}
