//! Every port's contract (`suites`) against the in-memory fakes and against the AWS adapters on a
//! moto server. Set `MOTO_ENDPOINT` (e.g. `http://127.0.0.1:5599`) to run the moto half; without
//! it those tests fail and say how to run them, or skip (saying so) with `SKIP_MOTO_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed test

mod suites;

use suites::Calls;

use aws_config::SdkConfig;
use store::provision::{ensure_key, ensure_queue, ensure_table};
use store::testing::{moto_config, moto_or_skip, unique_name};
use store::{DynamoStore, KmsSealer, MemoryQueue, MemorySealer, MemoryStore, QueueUrls, SqsQueue};

async fn moto() -> Option<SdkConfig> {
    let endpoint = moto_or_skip("a store contract test against moto")?;
    Some(moto_config(&endpoint).await)
}

/// A DynamoStore on a fresh table of its own, listing in pages of 3 to exercise paging.
async fn dynamo_store() -> Option<DynamoStore> {
    let config = moto().await?;
    let table = unique_name("store-test");
    ensure_table(&aws_sdk_dynamodb::Client::new(&config), &table)
        .await
        .expect("ensure table");
    Some(DynamoStore::from_conf(&config, table).with_page_limit(3))
}

async fn kms_sealer() -> Option<KmsSealer> {
    let config = moto().await?;
    let key_id = ensure_key(
        &aws_sdk_kms::Client::new(&config),
        &unique_name("alias/store-test"),
    )
    .await
    .expect("ensure key");
    Some(KmsSealer::from_conf(&config, key_id))
}

async fn sqs_queue(max_receive: u32) -> Option<(SqsQueue, QueueUrls)> {
    let config = moto().await?;
    let name = unique_name("store-test");
    let urls = ensure_queue(
        &aws_sdk_sqs::Client::new(&config),
        &name,
        &format!("{name}-dlq"),
        max_receive,
    )
    .await
    .expect("ensure queue");
    Some((SqsQueue::from_conf(&config), urls))
}

fn memory_queue(max_receive: u32) -> (MemoryQueue, QueueUrls) {
    let queue = MemoryQueue::new();
    let urls = queue.ensure_queue("jobs", "jobs-dlq", max_receive);
    (queue, urls)
}

/// One module per suite, with a `memory` and a `dynamodb` test that run the same function.
macro_rules! store_contract {
    ($($suite:ident),* $(,)?) => {$(
        mod $suite {
            use super::*;

            #[tokio::test]
            async fn memory() {
                suites::$suite(&MemoryStore::new()).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                if let Some(store) = dynamo_store().await {
                    suites::$suite(&store).await;
                }
            }
        }
    )*};
}

store_contract!(
    r_con_1_connections_round_trip_and_list_every_shop,
    shop_tokens_name_their_shop_in_one_read_until_rotated_or_disconnected,
    r_syn_2_cursor_never_moves_backwards,
    r_syn_2_checkpoints_are_kept_per_entity_until_cleared,
    r_syn_3_lease_is_exclusive_until_it_expires,
    r_ord_5_idempotency_claim_progress_and_replay,
    r_ord_5_a_recorded_attempt_survives_expiry_and_release_until_resolved,
    r_ord_5_a_holder_that_lost_its_claim_writes_nothing,
    r_syn_4_id_links_both_ways_in_batches,
    r_syn_5_several_parts_report_at_once_and_see_the_run_after,
    r_syn_2_cursor_and_checkpoint_change_apart_and_read_together,
);

/// Like `store_contract!`, for suites whose callers run at the same time: concurrently against
/// the fake, in sequence against moto (see `suites::Calls` for why).
macro_rules! store_contract_with_calls {
    ($($suite:ident),* $(,)?) => {$(
        mod $suite {
            use super::*;

            #[tokio::test]
            async fn memory() {
                suites::$suite(&MemoryStore::new(), Calls::Concurrent).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                if let Some(store) = dynamo_store().await {
                    suites::$suite(&store, Calls::InSequence).await;
                }
            }
        }
    )*};
}

store_contract_with_calls!(
    r_syn_3_concurrent_lease_requests_have_one_winner,
    r_ord_5_twenty_concurrent_claims_have_exactly_one_winner,
    r_syn_5_run_report_is_assembled_from_concurrent_updates,
    r_syn_5_run_lists_are_capped,
    r_syn_6_budget_is_shared_and_runs_out,
);

mod r_con_4_sealed_secret_opens_only_for_its_shop {
    use super::*;

    #[tokio::test]
    async fn memory() {
        suites::r_con_4_sealed_secret_opens_only_for_its_shop(&MemorySealer::new()).await;
    }

    #[tokio::test]
    async fn kms() {
        if let Some(sealer) = kms_sealer().await {
            suites::r_con_4_sealed_secret_opens_only_for_its_shop(&sealer).await;
        }
    }
}

mod r_syn_7_jobs_are_sent_received_and_deleted {
    use super::*;

    #[tokio::test]
    async fn memory() {
        let (queue, urls) = memory_queue(5);
        suites::r_syn_7_jobs_are_sent_received_and_deleted(&queue, &urls).await;
    }

    #[tokio::test]
    async fn sqs() {
        if let Some((queue, urls)) = sqs_queue(5).await {
            suites::r_syn_7_jobs_are_sent_received_and_deleted(&queue, &urls).await;
        }
    }
}

mod r_syn_7_a_job_failing_too_often_moves_to_the_dead_letter_queue {
    use super::*;

    #[tokio::test]
    async fn memory() {
        let (queue, urls) = memory_queue(2);
        suites::r_syn_7_a_job_failing_too_often_moves_to_the_dead_letter_queue(&queue, &urls).await;
    }

    #[tokio::test]
    async fn sqs() {
        if let Some((queue, urls)) = sqs_queue(2).await {
            suites::r_syn_7_a_job_failing_too_often_moves_to_the_dead_letter_queue(&queue, &urls)
                .await;
        }
    }
}

/// Provisioning twice (as every local start and every test does) changes nothing and fails nothing.
#[tokio::test]
async fn ensure_table_key_and_queue_are_idempotent() {
    let Some(config) = moto().await else { return };
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = unique_name("store-test");
    ensure_table(&dynamo, &table).await.expect("first table");
    ensure_table(&dynamo, &table).await.expect("second table");
    let ttl = dynamo
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("describe ttl")
        .time_to_live_description
        .expect("ttl description");
    assert_eq!(ttl.attribute_name.as_deref(), Some("expires_at"));

    let kms = aws_sdk_kms::Client::new(&config);
    let alias = unique_name("alias/store-test");
    let first = ensure_key(&kms, &alias).await.expect("first key");
    let second = ensure_key(&kms, &alias).await.expect("second key");
    let without_prefix = ensure_key(&kms, alias.trim_start_matches("alias/"))
        .await
        .expect("same alias");
    assert_eq!((&first, &first), (&second, &without_prefix));

    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = unique_name("store-test");
    let first = ensure_queue(&sqs, &name, &format!("{name}-dlq"), 3)
        .await
        .expect("first queue");
    let second = ensure_queue(&sqs, &name, &format!("{name}-dlq"), 3)
        .await
        .expect("second queue");
    assert_eq!(first, second);
    // A changed redrive policy is applied to the existing queue.
    let third = ensure_queue(&sqs, &name, &format!("{name}-dlq"), 5)
        .await
        .expect("changed queue");
    assert_eq!(first, third);
}
