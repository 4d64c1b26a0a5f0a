//! What the end-to-end suites check on the sandboxes, with one meaning each: the handles, numbers
//! compared by value, a run report's counts, Abaha's state as the shop sees it, and the two
//! different "nothing twice" checks (one item per id, and each item written once).

use std::collections::{BTreeMap, BTreeSet};

use sandbox::abaha::{AbahaHandle, Kind};
use sandbox::kiotviet::KvHandle;
use serde_json::{Value, json};

use crate::Stack;

/// Every kind of item this service writes to Abaha.
pub const ALL_KINDS: [Kind; 4] = [
    Kind::Categories,
    Kind::Products,
    Kind::Customers,
    Kind::Orders,
];

/// The stack's KiotViet FnB sandbox (the e2e stacks always run one).
pub fn kv(stack: &Stack) -> &KvHandle {
    stack.kiotviet.as_ref().expect("KiotViet sandbox")
}

/// The stack's Abaha sandbox.
pub fn abaha(stack: &Stack) -> &AbahaHandle {
    stack.abaha.as_ref().expect("Abaha sandbox")
}

/// Numbers compared by value (`35000` and `35000.0` are the same price), everything else as is.
pub fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        other => other.clone(),
    }
}

/// One part's section of a run report (`entities.<name>`).
pub fn part<'a>(report: &'a Value, name: &str) -> &'a Value {
    &report["entities"][name]
}

/// A count of one part of a run report; a missing count fails the test, naming the report.
pub fn count(report: &Value, name: &str, key: &str) -> u64 {
    part(report, name)[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}.{key} in {report}"))
}

/// Abaha's state for `shop` as the shop sees it: every stored item of `kinds` (as last received,
/// with its visibility), by kind and KiotViet id. Abaha hands out its ids in arrival order, which
/// concurrency and retries change, so an order line's `abaha_product_id` is replaced by the
/// KiotViet id of the Abaha product it names: a line linked to the wrong product still differs.
pub fn abaha_state(stack: &Stack, shop: &str, kinds: &[Kind]) -> BTreeMap<(Kind, String), Value> {
    let products: BTreeMap<String, String> = abaha(stack)
        .stored(shop, Kind::Products)
        .into_iter()
        .map(|s| (s.abaha_id, s.kiotviet_id))
        .collect();
    let mut out = BTreeMap::new();
    for &kind in kinds {
        for s in abaha(stack).stored(shop, kind) {
            let mut item = s.item.clone();
            if let Some(lines) = item.get_mut("lines").and_then(Value::as_array_mut) {
                for line in lines {
                    let linked = line["abaha_product_id"].as_str().map(|a| {
                        json!(format!(
                            "product of KiotViet id {}",
                            products.get(a).map_or("?", String::as_str)
                        ))
                    });
                    if let Some(linked) = linked {
                        line["abaha_product_id"] = linked;
                    }
                }
            }
            let key = (kind, s.kiotviet_id.clone());
            assert!(
                out.insert(key, json!({"item": norm(&item), "visible": s.visible}))
                    .is_none(),
                "{kind:?} {} stored twice in Abaha",
                s.kiotviet_id
            );
        }
    }
    out
}

/// Asserts two Abaha states are identical, naming the first few differences.
pub fn assert_same_state(
    what: &str,
    got: &BTreeMap<(Kind, String), Value>,
    want: &BTreeMap<(Kind, String), Value>,
) {
    let keys: BTreeSet<_> = got.keys().chain(want.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .take(5)
        .map(|k| format!("{k:?}: got {:?}, want {:?}", got.get(k), want.get(k)))
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: Abaha differs ({} vs {} items):\n{}",
        got.len(),
        want.len(),
        diffs.join("\n")
    );
}

/// Zero duplicates: Abaha holds one item per KiotViet id and handed out each Abaha id once, and
/// created exactly as many items as it holds (one shop per stack). Updates are allowed.
pub fn assert_no_duplicates(stack: &Stack, shop: &str, kinds: &[Kind]) {
    for &kind in kinds {
        let stored = abaha(stack).stored(shop, kind);
        let distinct: BTreeSet<&str> = stored.iter().map(|s| s.kiotviet_id.as_str()).collect();
        let abaha_ids: BTreeSet<&str> = stored.iter().map(|s| s.abaha_id.as_str()).collect();
        assert_eq!(
            distinct.len(),
            stored.len(),
            "{kind:?}: a KiotViet id stored twice"
        );
        assert_eq!(
            abaha_ids.len(),
            stored.len(),
            "{kind:?}: an Abaha id handed out twice"
        );
        assert_eq!(
            abaha(stack).counts(kind).created,
            stored.len() as u64,
            "{kind:?}: created count vs distinct items"
        );
    }
}

/// Stricter than [`assert_no_duplicates`]: every item was created once and never written again
/// (a sync that re-sent unchanged records would fail it).
pub fn assert_each_written_once(stack: &Stack, shop: &str, kinds: &[Kind]) {
    for &kind in kinds {
        let stored = abaha(stack).stored(shop, kind);
        assert_eq!(
            abaha(stack).counts(kind).created,
            stored.len() as u64,
            "{kind:?}"
        );
        assert!(
            stored.iter().all(|s| s.writes == 1),
            "{kind:?} written more than once"
        );
    }
}
