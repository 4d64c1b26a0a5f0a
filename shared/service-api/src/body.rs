//! Request bodies: JSON objects of the shapes CONTRACTS.md §1 documents.

use engine::ErrorCode;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Parses a JSON body into `T`, answering 400 for malformed JSON and 422 for the wrong shape.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if is_blank(body) {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            "The request needs a JSON body.",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!(
                "The body is not valid JSON (line {}, column {}).",
                e.line(),
                e.column()
            ),
        )
    })?;
    // serde reads a struct from a JSON array too (`[null, null]` would be an empty sync request):
    // every body of this API is an object.
    if !value.is_object() {
        return Err(ApiError::validation(
            "The body must be a JSON object ({…}) with the fields this route documents.",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::validation(format!("The body does not have the expected fields: {e}."))
            .with_details(json!({"reason": e.to_string()}))
    })
}

/// An empty body, or only whitespace (a sync request may have none).
pub fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_400_and_wrong_shape_is_422() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            a: i64,
        }
        assert_eq!(parse_body::<B>(b"{").unwrap_err().status, 400);
        assert_eq!(parse_body::<B>(b"").unwrap_err().status, 400);
        assert_eq!(parse_body::<B>(br#"{"a":"x"}"#).unwrap_err().status, 422);
        // Found by infra/fuzz.sh: serde reads a struct from an array.
        assert_eq!(parse_body::<B>(b"[1]").unwrap_err().status, 422);
        assert!(parse_body::<B>(br#"{"a":1}"#).is_ok());
    }
}
