//! Client secrets sealed with AWS KMS (R-CON-4).
//!
//! Direct `Encrypt`/`Decrypt` rather than envelope encryption: a client secret is far below KMS's
//! 4 KB plaintext limit, and one call per open keeps the data key out of our memory entirely.
//! The encryption context `{"shop_id": shop}` binds each ciphertext to its shop: KMS refuses to
//! decrypt it for another shop, and CloudTrail records which shop's secret was opened.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use crate::StoreError;
use crate::model::SealedSecret;
use crate::ports::SecretSealer;

const CONTEXT_KEY: &str = "shop_id";

/// [`SecretSealer`] on KMS. `key_id` may be a key id, key ARN or `alias/…`.
#[derive(Debug, Clone)]
pub struct KmsSealer {
    client: Client,
    key_id: String,
}

impl KmsSealer {
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        KmsSealer {
            client,
            key_id: key_id.into(),
        }
    }

    pub fn from_conf(config: &aws_config::SdkConfig, key_id: impl Into<String>) -> Self {
        Self::new(Client::new(config), key_id)
    }
}

#[async_trait]
impl SecretSealer for KmsSealer {
    async fn seal(&self, shop: &str, secret: &SecretString) -> Result<SealedSecret, StoreError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(secret.expose_secret().as_bytes()))
            .encryption_context(CONTEXT_KEY, shop)
            .send()
            .await
            .map_err(|e| StoreError::aws("kms encrypt", e))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| StoreError::malformed("kms encrypt answer", "no ciphertext blob"))?;
        Ok(SealedSecret::from_base64(STANDARD.encode(blob.as_ref())))
    }

    async fn open(&self, shop: &str, sealed: &SealedSecret) -> Result<SecretString, StoreError> {
        let rejected =
            |source: Option<Box<dyn std::error::Error + Send + Sync>>| StoreError::SecretRejected {
                shop: shop.to_owned(),
                source,
            };
        let ciphertext = STANDARD
            .decode(sealed.as_base64())
            .map_err(|e| rejected(Some(Box::new(e))))?;
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_context(CONTEXT_KEY, shop)
            .send()
            .await
            .map_err(|e| {
                let refused = e.as_service_error().is_some_and(|se| {
                    se.is_invalid_ciphertext_exception() || se.is_incorrect_key_exception()
                });
                if refused {
                    rejected(Some(Box::new(StoreError::aws("kms decrypt", e))))
                } else {
                    StoreError::aws("kms decrypt", e)
                }
            })?;
        let plaintext = out
            .plaintext
            .ok_or_else(|| StoreError::malformed("kms decrypt answer", "no plaintext"))?;
        let text = String::from_utf8(plaintext.into_inner()).map_err(|_| rejected(None))?;
        Ok(SecretString::from(text))
    }
}
