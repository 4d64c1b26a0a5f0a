//! Shop tokens: handed out once, stored only as a sha256 hash, compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new shop token: 32 random bytes, url-safe base64 without padding (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The form a token is stored in: sha256 of its text, lowercase hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `hash`, compared in constant time so timing reveals nothing.
pub fn token_matches(hash: &str, token: &str) -> bool {
    let candidate = hash_token(token);
    // Lengths are public (always 64 for a real hash); only the content comparison must be constant-time.
    candidate.len() == hash.len() && bool::from(candidate.as_bytes().ct_eq(hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_43_url_safe_characters_and_never_repeats() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn a_token_matches_its_hash_only() {
        // GIVEN a token and its stored hash
        let token = new_token();
        let hash = hash_token(&token);
        // THEN the hash is sha256 hex, and only the same token matches it
        assert_eq!(hash.len(), 64);
        assert!(token_matches(&hash, &token));
        assert!(!token_matches(&hash, &new_token()));
        assert!(!token_matches(&hash, ""));
        assert!(!token_matches("", &token));
    }

    #[test]
    fn hash_token_is_plain_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
