//! The job queue on SQS (R-SYN-7). Bodies are JSON; redrive to the dead-letter queue is SQS's own.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::Value;

use crate::StoreError;
use crate::model::QueuedJob;
use crate::ports::JobQueue;

/// [`JobQueue`] on SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
}

impl SqsQueue {
    pub fn new(client: Client) -> Self {
        SqsQueue { client }
    }

    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(config))
    }
}

fn as_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(
        &self,
        queue_url: &str,
        body: &Value,
        delay_secs: Option<u32>,
    ) -> Result<String, StoreError> {
        let text = serde_json::to_string(body).map_err(|e| StoreError::malformed("job body", e))?;
        let out = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(text)
            .set_delay_seconds(delay_secs.map(as_i32))
            .send()
            .await
            .map_err(|e| StoreError::aws("sqs send_message", e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        wait_secs: u32,
        visibility_secs: u32,
    ) -> Result<Vec<QueuedJob>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(as_i32(max.clamp(1, 10)))
            .wait_time_seconds(as_i32(wait_secs.min(20)))
            .visibility_timeout(as_i32(visibility_secs))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| StoreError::aws("sqs receive_message", e))?;
        let jobs = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                // A message without a receipt handle cannot be acknowledged: SQS never sends one.
                let receipt = m.receipt_handle?;
                let raw = m.body.unwrap_or_default();
                let body = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(QueuedJob {
                    id: m.message_id.unwrap_or_default(),
                    receipt,
                    body,
                    receive_count,
                })
            })
            .collect();
        Ok(jobs)
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), StoreError> {
        self.client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| StoreError::aws("sqs delete_message", e))?;
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue_url: &str,
        receipt: &str,
        secs: u32,
    ) -> Result<(), StoreError> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(as_i32(secs))
            .send()
            .await
            .map_err(|e| StoreError::aws("sqs change_message_visibility", e))?;
        Ok(())
    }
}
