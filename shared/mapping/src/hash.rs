//! Content hashes for "unchanged" detection (R-SYN-4: unchanged records are not re-written to
//! Abaha; R-CUS-3: a push that echoes the pull changes nothing).
//!
//! The hash is over a canonical JSON form — object keys sorted at every level — so it does not
//! depend on struct field order or on whether some dependency turned on serde_json's
//! `preserve_order` feature for the whole build.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of the canonical JSON of `value`.
///
/// Serializing our wire types cannot fail (string keys, finite numbers); should some other type
/// fail, the hash covers the error text, which never equals a hash of real content.
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> String {
    let mut hasher = Sha256::new();
    match serde_json::to_value(value) {
        Ok(v) => write_canonical(&v, &mut hasher),
        Err(e) => {
            hasher.update(b"\x00unserializable:");
            hasher.update(e.to_string().as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

/// Canonical JSON of `value` (sorted keys, no whitespace), e.g. for storing next to the hash.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn write_canonical(v: &Value, out: &mut impl Sink) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.put(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_scalar(&Value::String(k.clone()), out);
                out.put(b":");
                write_canonical(v, out);
            }
            out.put(b"}");
        }
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_canonical(item, out);
            }
            out.put(b"]");
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(v: &Value, out: &mut impl Sink) {
    // A scalar Value always serializes; the fallback only keeps this total.
    out.put(v.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn r_syn_4_equal_content_hashes_equal_whatever_the_key_order() {
        // GIVEN the same content with keys in another order
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": null}});
        let b = json!({"a": {"x": null, "y": [1, 2]}, "b": 1});
        // THEN the hashes are equal, and a 64-hex-digit SHA-256
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_eq!(content_hash(&a).len(), 64);
        assert_eq!(canonical_json(&b), r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
    }

    #[test]
    fn r_syn_4_any_change_changes_the_hash() {
        let a = json!({"name": "Cà phê", "price": 35000.0});
        let b = json!({"name": "Cà phê", "price": 36000.0});
        assert_ne!(content_hash(&a), content_hash(&b));
        // Array order is content (image order, line order).
        assert_ne!(content_hash(&json!([1, 2])), content_hash(&json!([2, 1])));
    }

    #[test]
    fn r_syn_4_struct_and_value_forms_agree() {
        #[derive(Serialize)]
        struct S {
            z: i32,
            a: &'static str,
        }
        assert_eq!(
            content_hash(&S { z: 1, a: "x" }),
            content_hash(&json!({"a": "x", "z": 1}))
        );
    }
}
