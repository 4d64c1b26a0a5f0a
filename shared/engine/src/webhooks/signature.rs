//! The signature of a KiotViet delivery (R-SYN-8): HMAC-SHA256 of the raw body, keyed with the
//! shop's webhook secret.

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::service::Service;

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the delivery carries no X-Hub-Signature header")]
    Missing,
    #[error("the X-Hub-Signature header is not `[algo=]<hex>`")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::Malformed | SignatureError::Mismatch => "bad_signature",
        }
    }
}

/// Checks `header` against HMAC-SHA256 of the raw `body` keyed with `secret` (the exact string
/// registered as `Secret`). KiotViet sends `sha1=<hex>` although the MAC is SHA-256; any
/// `algo=` prefix and either hex case are accepted. The comparison is constant-time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let value = header
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(SignatureError::Missing)?;
    let hex_part = match value.split_once('=') {
        Some((algo, rest))
            if !algo.is_empty() && algo.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            rest.trim()
        }
        Some(_) => return Err(SignatureError::Malformed),
        None => value,
    };
    let expected = hex::decode(hex_part).map_err(|_| SignatureError::Malformed)?;
    // HMAC takes a key of any length; the error branch cannot happen but must not panic.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature` value KiotViet would send for `body` to `shop`'s hooks (`sha1=<hex>`),
/// or None when the shop has no webhook secret. For tests and local tools that replay deliveries;
/// the secret itself never leaves this function.
pub async fn signature_for_shop(
    svc: &Service,
    shop: &str,
    body: &[u8],
) -> Result<Option<String>, store::StoreError> {
    let Some(sealed) = svc
        .store
        .get_connection(shop)
        .await?
        .and_then(|c| c.webhook_secret)
    else {
        return Ok(None);
    };
    let secret = svc.sealer.open(shop, &sealed).await?;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return Ok(None);
    };
    mac.update(body);
    Ok(Some(format!(
        "sha1={}",
        hex::encode(mac.finalize().into_bytes())
    )))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    pub(crate) const SECRET: &str = "c2VjcmV0LXNlY3JldC0xMjM0NTY=";
    const BODY: &[u8] = br#"{"Id":"b1f0","Attempt":1,"Notifications":[]}"#;

    #[test]
    fn r_syn_8_signature_with_sha1_or_sha256_prefix_or_none_verifies() {
        // GIVEN the HMAC-SHA256 of the raw body, hex
        let hex = sign(SECRET, BODY);
        // WHEN it comes with KiotViet's `sha1=` prefix, a `sha256=` prefix, or none
        // THEN each verifies
        for header in [
            format!("sha1={hex}"),
            format!("sha256={hex}"),
            hex.clone(),
            format!("  sha1={hex} "),
        ] {
            assert_eq!(
                verify_signature(SECRET.as_bytes(), BODY, Some(&header)),
                Ok(()),
                "{header}"
            );
        }
    }

    #[test]
    fn r_syn_8_signature_hex_case_does_not_matter() {
        let hex = sign(SECRET, BODY);
        let upper = format!("SHA1={}", hex.to_ascii_uppercase());
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, Some(&upper)),
            Ok(())
        );
    }

    #[test]
    fn r_syn_8_signature_with_the_wrong_key_or_a_changed_body_is_refused() {
        let header = format!("sha1={}", sign(SECRET, BODY));
        // GIVEN a signature made with another key THEN it is a mismatch
        assert_eq!(
            verify_signature(b"another-secret", BODY, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        // GIVEN one byte of the body changed THEN it is a mismatch
        let changed = br#"{"Id":"b1f0","Attempt":2,"Notifications":[]}"#;
        assert_eq!(
            verify_signature(SECRET.as_bytes(), changed, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        // GIVEN a signature of the right length cut short THEN it is a mismatch, not a panic
        let short = &header[..header.len() - 2];
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, Some(short)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn r_syn_8_empty_body_verifies_only_against_its_own_signature() {
        let empty_sig = format!("sha1={}", sign(SECRET, b""));
        assert_eq!(
            verify_signature(SECRET.as_bytes(), b"", Some(&empty_sig)),
            Ok(())
        );
        let body_sig = format!("sha1={}", sign(SECRET, BODY));
        assert_eq!(
            verify_signature(SECRET.as_bytes(), b"", Some(&body_sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn r_syn_8_missing_or_malformed_signatures_are_told_apart() {
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(SECRET.as_bytes(), BODY, Some("  ")),
            Err(SignatureError::Missing)
        );
        for bad in [
            "sha1=xyz",
            "sha1=abc",
            "=00ff",
            "sha-1=00ff",
            "not hex at all",
        ] {
            assert_eq!(
                verify_signature(SECRET.as_bytes(), BODY, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
