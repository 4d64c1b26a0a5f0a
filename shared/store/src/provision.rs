//! Idempotent creation of what the service needs in an AWS account or a local stand-in (moto):
//! the table, the KMS key and the job queues. Used by the local stack and the tests; deployed
//! stacks get the same resources from the SAM template.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::StoreError;
use crate::model::QueueUrls;

/// Creates the single table (`pk`/`sk` strings, on-demand, TTL on `expires_at`) unless it exists,
/// and waits until it is active.
pub async fn ensure_table(dynamo: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), StoreError> {
    let existing = dynamo.describe_table().table_name(name).send().await;
    match existing {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            create_table(dynamo, name).await?;
        }
        Err(e) => return Err(StoreError::aws("dynamodb describe_table", e)),
    }
    wait_until_active(dynamo, name).await?;
    enable_ttl(dynamo, name).await
}

fn build_error(what: &str, e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::malformed(what, e)
}

async fn create_table(dynamo: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), StoreError> {
    let mut request = dynamo
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, key_type) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| build_error("table definition", e))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(key_type)
                    .build()
                    .map_err(|e| build_error("table key schema", e))?,
            );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        // Created by someone else meanwhile.
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(StoreError::aws("dynamodb create_table", e)),
    }
}

async fn wait_until_active(
    dynamo: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), StoreError> {
    for _ in 0..120 {
        let out = dynamo
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| StoreError::aws("dynamodb describe_table", e))?;
        if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::NotFound {
        what: format!("active table {name} (still not active after a minute)"),
    })
}

async fn enable_ttl(dynamo: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), StoreError> {
    let current = dynamo
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| StoreError::aws("dynamodb describe_time_to_live", e))?;
    let enabled = current.time_to_live_description.is_some_and(|d| {
        d.attribute_name.as_deref() == Some("expires_at")
            && matches!(
                d.time_to_live_status,
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
    });
    if enabled {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name("expires_at")
        .enabled(true)
        .build()
        .map_err(|e| build_error("ttl specification", e))?;
    match dynamo
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // "TimeToLive is already enabled": a concurrent ensure_table won.
        Err(e)
            if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                == Some("ValidationException") =>
        {
            Ok(())
        }
        Err(e) => Err(StoreError::aws("dynamodb update_time_to_live", e)),
    }
}

/// The id of the KMS key behind `alias` (with or without the `alias/` prefix), creating the key
/// (with yearly rotation) and the alias if the alias does not exist yet.
pub async fn ensure_key(kms: &aws_sdk_kms::Client, alias: &str) -> Result<String, StoreError> {
    let alias = if alias.starts_with("alias/") {
        alias.to_owned()
    } else {
        format!("alias/{alias}")
    };
    if let Some(key_id) = describe_alias(kms, &alias).await? {
        return Ok(key_id);
    }
    let created = kms
        .create_key()
        .description("KiotViet sync: client and webhook secrets of connected shops")
        .send()
        .await
        .map_err(|e| StoreError::aws("kms create_key", e))?;
    let key_id = created
        .key_metadata
        .map(|m| m.key_id)
        .ok_or_else(|| StoreError::malformed("kms create_key answer", "no key metadata"))?;
    kms.enable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .map_err(|e| StoreError::aws("kms enable_key_rotation", e))?;
    match kms
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
    {
        Ok(_) => Ok(key_id),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_already_exists_exception()) =>
        {
            // Another process created the alias first: use its key, schedule ours for deletion.
            let winner =
                describe_alias(kms, &alias)
                    .await?
                    .ok_or_else(|| StoreError::NotFound {
                        what: format!("kms key behind {alias}"),
                    })?;
            let _ = kms
                .schedule_key_deletion()
                .key_id(&key_id)
                .pending_window_in_days(7)
                .send()
                .await;
            Ok(winner)
        }
        Err(e) => Err(StoreError::aws("kms create_alias", e)),
    }
}

async fn describe_alias(
    kms: &aws_sdk_kms::Client,
    alias: &str,
) -> Result<Option<String>, StoreError> {
    match kms.describe_key().key_id(alias).send().await {
        Ok(out) => Ok(out.key_metadata.map(|m| m.key_id)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(StoreError::aws("kms describe_key", e)),
    }
}

/// Creates (or finds) a queue and its dead-letter queue; a message received `max_receive` times
/// without being deleted moves to the dead-letter queue (R-SYN-7).
pub async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dlq_name: &str,
    max_receive: u32,
) -> Result<QueueUrls, StoreError> {
    let dlq_url = create_or_find_queue(sqs, dlq_name, None).await?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| StoreError::aws("sqs get_queue_attributes", e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| StoreError::malformed("sqs queue attributes", "no QueueArn"))?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive })
            .to_string();
    let url = create_or_find_queue(sqs, name, Some(redrive)).await?;
    Ok(QueueUrls { url, dlq_url })
}

async fn create_or_find_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive: Option<String>,
) -> Result<String, StoreError> {
    let mut request = sqs.create_queue().queue_name(name);
    if let Some(policy) = &redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    match request.send().await {
        Ok(out) => out
            .queue_url
            .ok_or_else(|| StoreError::malformed("sqs create_queue answer", "no queue url")),
        // The queue exists with other attributes: find it and set ours.
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_queue_name_exists()) =>
        {
            let url = sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| StoreError::aws("sqs get_queue_url", e))?
                .queue_url
                .ok_or_else(|| StoreError::malformed("sqs get_queue_url answer", "no queue url"))?;
            if let Some(policy) = redrive {
                sqs.set_queue_attributes()
                    .queue_url(&url)
                    .attributes(QueueAttributeName::RedrivePolicy, policy)
                    .send()
                    .await
                    .map_err(|e| StoreError::aws("sqs set_queue_attributes", e))?;
            }
            Ok(url)
        }
        Err(e) => Err(StoreError::aws("sqs create_queue", e)),
    }
}
