//! Catalog rules, KiotViet FnB → Abaha: categories with their parent links (R-CAT-1) and
//! products (R-PRD-1, R-PRD-2, R-PRD-5). Visibility and price books never appear here
//! (R-PRD-3, R-NOT-2, R-NOT-3); deletions are reported elsewhere, never mapped (R-PRD-4).

use std::collections::{HashMap, HashSet};

use crate::abaha::{AttributeItem, CategoryItem, ProductItem};
use crate::kiotviet::{Category, Product};

/// R-CAT-1: a category becomes an item keyed by its KiotViet id, with its parent link
/// (`null` for roots) and rank (0 when KiotViet omits it).
pub fn category_item(c: &Category) -> CategoryItem {
    CategoryItem {
        kiotviet_id: c.category_id,
        name: clean(c.category_name.as_deref()).unwrap_or_default(),
        parent_kiotviet_id: parent_of(c),
        rank: c.rank.unwrap_or(0),
    }
}

/// A parent of 0 or the category itself is not a parent (roots may be sent either way).
fn parent_of(c: &Category) -> Option<i64> {
    c.parent_id.filter(|p| *p > 0 && *p != c.category_id)
}

/// R-CAT-1: flattens a tree answer (`hierachicalData=true`) into a list, parents before their
/// children, each child's `parent_id` filled from the tree when KiotViet left it out.
pub fn flatten_categories(tree: Vec<Category>) -> Vec<Category> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // Explicit stack instead of recursion: the input is untrusted and could be deep.
    let mut stack: Vec<(Category, Option<i64>)> =
        tree.into_iter().rev().map(|c| (c, None)).collect();
    while let Some((mut c, parent)) = stack.pop() {
        if c.parent_id.is_none() {
            c.parent_id = parent;
        }
        let children = std::mem::take(&mut c.children);
        let id = c.category_id;
        if seen.insert(id) {
            out.push(c);
        }
        stack.extend(children.into_iter().rev().map(|child| (child, Some(id))));
    }
    out
}

/// Orders a flat list so that every parent comes before its children (Abaha links a child to
/// a parent it already knows). Unknown parents and cycles keep the input order at the end.
pub fn parents_first(categories: Vec<Category>) -> Vec<Category> {
    let parent: HashMap<i64, Option<i64>> = categories
        .iter()
        .map(|c| (c.category_id, parent_of(c)))
        .collect();
    let depth = |id: i64| -> usize {
        let mut d = 0;
        let mut cur = parent.get(&id).copied().flatten();
        while let Some(p) = cur {
            d += 1;
            if d > parent.len() {
                break; // a cycle: stop counting
            }
            cur = parent.get(&p).copied().flatten();
        }
        d
    };
    let mut keyed: Vec<(usize, Category)> = categories
        .into_iter()
        .map(|c| (depth(c.category_id), c))
        .collect();
    // Stable: same-depth categories keep KiotViet's order (its rank order).
    keyed.sort_by_key(|(d, _)| *d);
    keyed.into_iter().map(|(_, c)| c).collect()
}

/// R-PRD-1/2/5: a KiotViet product becomes an Abaha product item.
///
/// * price = list price = `basePrice` (0 when missing) — price books are never used (R-PRD-2);
/// * `master_kiotviet_id` = `masterProductId` (variant), else `masterUnitId` (other unit), else
///   none — and none when it names the product itself;
/// * `stock` = `onHand` of the inventory row of the connection's branch, `None` when KiotViet sent
///   no row for that branch (R-PRD-5);
/// * no visibility field: Abaha shows new products and keeps the shop's choice (R-PRD-3).
pub fn product_item(p: &Product, branch_id: i64) -> ProductItem {
    let price = p.base_price.unwrap_or(0.0);
    let name = clean(p.name.as_deref())
        .or_else(|| clean(p.full_name.as_deref()))
        .or_else(|| clean(p.code.as_deref()))
        .unwrap_or_default();
    ProductItem {
        kiotviet_id: p.id,
        code: clean(p.code.as_deref()),
        name,
        full_name: clean(p.full_name.as_deref()),
        category_kiotviet_id: p.category_id.filter(|c| *c > 0),
        unit: clean(p.unit.as_deref()),
        description: clean(p.description.as_deref()),
        images: p
            .images
            .iter()
            .filter_map(|i| clean(Some(i.url())))
            .collect(),
        attributes: p
            .attributes
            .iter()
            .filter_map(|a| {
                let name = clean(a.attribute_name.as_deref())?;
                Some(AttributeItem {
                    name,
                    value: clean(a.attribute_value.as_deref()).unwrap_or_default(),
                })
            })
            .collect(),
        master_kiotviet_id: p
            .master_product_id
            .or(p.master_unit_id)
            .filter(|m| *m > 0 && *m != p.id),
        is_topping: p.is_topping.unwrap_or(false),
        topping_kiotviet_ids: p.toppings.iter().map(|t| t.id).collect(),
        price,
        list_price: price,
        stock: p
            .inventories
            .iter()
            .find(|i| i.branch_id == Some(branch_id))
            .and_then(|i| i.on_hand),
    }
}

/// Trimmed text, `None` when blank.
fn clean(s: Option<&str>) -> Option<String> {
    let t = s?.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn category(v: serde_json::Value) -> Category {
        serde_json::from_value(v).unwrap()
    }

    fn product(v: serde_json::Value) -> Product {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn r_cat_1_category_keeps_its_parent_link_and_rank() {
        // GIVEN a child category with a parent and a rank
        let c = category(
            json!({"categoryId": 1002, "parentId": 1001, "categoryName": " Pha máy ", "rank": 3}),
        );
        // WHEN mapped
        let item = category_item(&c);
        // THEN the link, trimmed name and rank are carried
        assert_eq!(
            item,
            CategoryItem {
                kiotviet_id: 1002,
                name: "Pha máy".into(),
                parent_kiotviet_id: Some(1001),
                rank: 3
            }
        );
    }

    #[test]
    fn r_cat_1_root_has_null_parent_and_rank_defaults_to_zero() {
        // GIVEN roots written without a parent, with parent 0, and with themselves as parent
        for v in [
            json!({"categoryId": 1}),
            json!({"categoryId": 1, "parentId": 0}),
            json!({"categoryId": 1, "parentId": 1}),
        ] {
            // WHEN mapped THEN the parent is null and the rank 0
            let item = category_item(&category(v));
            assert_eq!(item.parent_kiotviet_id, None);
            assert_eq!(item.rank, 0);
        }
    }

    #[test]
    fn r_cat_1_tree_is_flattened_parents_first_with_links_filled() {
        // GIVEN a tree whose children omit parentId
        let tree = vec![category(json!({
            "categoryId": 1, "categoryName": "A",
            "children": [
                {"categoryId": 2, "children": [{"categoryId": 3}]},
                {"categoryId": 4, "parentId": 1}
            ]
        }))];
        // WHEN flattened
        let flat = flatten_categories(tree);
        // THEN every node appears once, parents first, links filled, children emptied
        let ids: Vec<_> = flat.iter().map(|c| (c.category_id, c.parent_id)).collect();
        assert_eq!(
            ids,
            vec![(1, None), (2, Some(1)), (3, Some(2)), (4, Some(1))]
        );
        assert!(flat.iter().all(|c| c.children.is_empty()));
    }

    #[test]
    fn r_cat_1_flat_list_is_ordered_parents_first() {
        // GIVEN a flat answer where a grandchild comes before its ancestors, and a cycle
        let list = vec![
            category(json!({"categoryId": 3, "parentId": 2})),
            category(json!({"categoryId": 2, "parentId": 1})),
            category(json!({"categoryId": 1})),
            category(json!({"categoryId": 8, "parentId": 9})),
            category(json!({"categoryId": 9, "parentId": 8})),
        ];
        // WHEN ordered
        let ids: Vec<i64> = parents_first(list).iter().map(|c| c.category_id).collect();
        // THEN ancestors precede descendants and the cycle does not hang
        assert_eq!(&ids[..3], &[1, 2, 3]);
        assert_eq!(ids.len(), 5);
    }

    fn sample_product() -> Product {
        product(json!({
            "id": 5001, "code": "CF001", "name": "Cà phê sữa", "fullName": "Cà phê sữa - Ly lớn",
            "categoryId": 1002, "isTopping": false, "unit": "Ly", "description": "Ngon",
            "attributes": [{"productId": 5001, "attributeName": "Size", "attributeValue": "L"}],
            "masterProductId": 5000, "masterUnitId": 4999,
            "images": ["https://cdn.example/cf001.jpg", {"Image": "https://cdn.example/2.jpg"}, ""],
            "inventories": [
                {"branchId": 1, "onHand": 99},
                {"branchId": 233443, "onHand": 7, "reserved": 2}
            ],
            "priceBooks": [{"priceBookId": 7, "price": 29000}],
            "toppings": [{"id": 6001}, {"id": 6002}],
            "basePrice": 35000
        }))
    }

    #[test]
    fn r_prd_1_product_fields_are_carried() {
        // GIVEN a full KiotViet product WHEN mapped for branch 233443
        let item = product_item(&sample_product(), 233443);
        // THEN code, names, category, unit, description, images, attributes, toppings are carried
        assert_eq!(item.kiotviet_id, 5001);
        assert_eq!(item.code.as_deref(), Some("CF001"));
        assert_eq!(item.name, "Cà phê sữa");
        assert_eq!(item.full_name.as_deref(), Some("Cà phê sữa - Ly lớn"));
        assert_eq!(item.category_kiotviet_id, Some(1002));
        assert_eq!(item.unit.as_deref(), Some("Ly"));
        assert_eq!(item.description.as_deref(), Some("Ngon"));
        assert_eq!(
            item.images,
            vec!["https://cdn.example/cf001.jpg", "https://cdn.example/2.jpg"]
        );
        assert_eq!(
            item.attributes,
            vec![AttributeItem {
                name: "Size".into(),
                value: "L".into()
            }]
        );
        assert!(!item.is_topping);
        assert_eq!(item.topping_kiotviet_ids, vec![6001, 6002]);
    }

    #[test]
    fn r_prd_1_master_is_master_product_then_master_unit_then_none() {
        // GIVEN a variant (masterProductId), a unit (masterUnitId only), and a product that is
        // its own master
        let variant = sample_product();
        let unit = product(json!({"id": 5002, "masterUnitId": 5001}));
        let own = product(json!({"id": 5000, "masterProductId": 5000}));
        let plain = product(json!({"id": 4000}));
        // WHEN mapped THEN the master link follows that order and is null for a master
        assert_eq!(product_item(&variant, 1).master_kiotviet_id, Some(5000));
        assert_eq!(product_item(&unit, 1).master_kiotviet_id, Some(5001));
        assert_eq!(product_item(&own, 1).master_kiotviet_id, None);
        assert_eq!(product_item(&plain, 1).master_kiotviet_id, None);
    }

    #[test]
    fn r_prd_1_topping_flag_defaults_to_false() {
        let item = product_item(&product(json!({"id": 1, "isTopping": true})), 1);
        assert!(item.is_topping);
        assert!(!product_item(&product(json!({"id": 1})), 1).is_topping);
    }

    #[test]
    fn r_prd_2_price_and_list_price_are_base_price_never_a_price_book() {
        // GIVEN a product with basePrice 35000 and a price book at 29000
        let item = product_item(&sample_product(), 233443);
        // THEN both prices are the base price
        assert_eq!((item.price, item.list_price), (35000.0, 35000.0));
        // AND a product without basePrice costs 0
        let item = product_item(&product(json!({"id": 1})), 1);
        assert_eq!((item.price, item.list_price), (0.0, 0.0));
    }

    #[test]
    fn r_prd_5_stock_is_on_hand_of_the_connection_branch_only() {
        // GIVEN inventories in two branches
        let p = sample_product();
        // WHEN mapped for each THEN that branch's on-hand is the stock (reserved not subtracted)
        assert_eq!(product_item(&p, 233443).stock, Some(7.0));
        assert_eq!(product_item(&p, 1).stock, Some(99.0));
        // AND no row for the branch means no stock figure
        assert_eq!(product_item(&p, 42).stock, None);
    }

    #[test]
    fn r_prd_3_the_item_has_no_visibility_field() {
        let v = serde_json::to_value(product_item(&sample_product(), 1)).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        for k in keys {
            assert!(
                !["visible", "hidden", "status", "is_active", "price_books"].contains(&k.as_str()),
                "{k}"
            );
        }
    }

    #[test]
    fn r_prd_1_nameless_product_falls_back_to_full_name_then_code() {
        let item = product_item(&product(json!({"id": 1, "fullName": " ", "code": "X1"})), 1);
        assert_eq!(item.name, "X1");
    }
}
