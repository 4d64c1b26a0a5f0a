//! One page of each entity: decode, map with the pure rules of `mapping`, send only what changed
//! (R-SYN-4), record the links, and count the results.

use mapping::api::{ManualAction, ManualActionKind, RunError};
use std::collections::HashMap;
use std::time::Instant;

use abaha::{AbahaError, Collection};
use mapping::abaha::ItemResult;
use mapping::hash::content_hash;
use mapping::kiotviet::{Category, Customer, Invoice, Page, Product};
use serde::Serialize;
use store::{Connection, IdKind, IdLink};

use crate::error::JobError;
use crate::model::Tally;
use crate::service::Service;

/// What one page adds to the run's lists.
#[derive(Debug, Default)]
pub(crate) struct PageStep {
    pub(crate) manual_actions: Vec<ManualAction>,
    pub(crate) errors: Vec<RunError>,
    /// The page belongs to an entity's first sync: nothing to compare with in the ID map.
    pub(crate) first_sync: bool,
}

impl PageStep {
    fn error(&mut self, entity: &str, kiotviet_id: Option<i64>, message: String) {
        self.errors
            .push(RunError::new(entity, kiotviet_id, message));
    }
}

/// Decodes a page's records one by one, so one bad record is skipped and named, not the page.
pub(super) fn decode<T: serde::de::DeserializeOwned>(
    page: &Page,
    entity: &str,
    tally: &mut Tally,
    step: &mut PageStep,
) -> Vec<T> {
    let mut out = Vec::with_capacity(page.data.len());
    for r in page.decode::<T>() {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                tally.failed += 1;
                step.error(
                    entity,
                    e.id,
                    format!("KiotViet sent a record we could not read ({e}); it was skipped."),
                );
            }
        }
    }
    out
}

/// Sends the items whose content changed since the last write (R-SYN-4), records the links, and
/// counts the results.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upsert_changed<T: Serialize>(
    svc: &Service,
    conn: &Connection,
    kind: IdKind,
    collection: Collection,
    entity: &str,
    items: Vec<(i64, T)>,
    hash_of: fn(&T) -> String,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    if items.is_empty() {
        return Ok(());
    }
    let shop = conn.shop_id.as_str();
    let ids: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
    let links = if step.first_sync {
        HashMap::new()
    } else {
        svc.store.get_links(shop, kind, &ids).await?
    };
    let mut changed: Vec<(i64, String, T)> = Vec::new();
    for (id, item) in items {
        let hash = hash_of(&item);
        match links.get(&id) {
            Some(link) if link.hash.as_deref() == Some(hash.as_str()) => tally.unchanged += 1,
            _ => changed.push((id, hash, item)),
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let payload: Vec<&T> = changed.iter().map(|(_, _, item)| item).collect();
    let outcome = match svc
        .abaha
        .upsert(shop, collection, &payload, Some(deadline))
        .await
    {
        Ok(o) => o,
        Err(AbahaError::Rejected { message, code, .. }) => {
            // Abaha refused the batch as a whole: our payload is at fault, not the run. Name the
            // records and go on with the next page.
            tally.failed += changed.len() as u64;
            for (id, _, _) in &changed {
                step.error(
                    entity,
                    Some(*id),
                    format!("Abaha refused this record ({code}): {message}"),
                );
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    tally.abaha_calls += outcome.http_calls;
    let mut new_links = Vec::with_capacity(changed.len());
    for ((id, hash, _), result) in changed.into_iter().zip(outcome.results) {
        count_result(&result, id, hash, entity, tally, step, &mut new_links);
    }
    svc.store.put_links(shop, kind, &new_links).await?;
    Ok(())
}

pub(super) fn count_result(
    result: &ItemResult,
    id: i64,
    hash: String,
    entity: &str,
    tally: &mut Tally,
    step: &mut PageStep,
    links: &mut Vec<(i64, IdLink)>,
) {
    if let Some(err) = &result.error {
        tally.failed += 1;
        step.error(
            entity,
            Some(id),
            format!("Abaha refused this record ({}): {}", err.code, err.message),
        );
        return;
    }
    let Some(abaha_id) = result.abaha_id.clone() else {
        tally.failed += 1;
        step.error(
            entity,
            Some(id),
            "Abaha answered without an id for this record.".into(),
        );
        return;
    };
    match result.status.map(|s| s.as_str()) {
        Some("created") => tally.created += 1,
        Some("updated") => tally.updated += 1,
        _ => tally.unchanged += 1,
    }
    links.push((
        id,
        IdLink {
            abaha_id,
            hash: Some(hash),
        },
    ));
}

pub(super) async fn categories_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    let mut cats: Vec<Category> = decode(page, "categories", tally, step);
    // Parents before children inside a batch, so Abaha can link them as they arrive (R-CAT-1).
    cats.sort_by_key(|c| (c.parent_id.is_some(), c.category_id));
    let items = cats
        .iter()
        .map(|c| (c.category_id, mapping::catalog::category_item(c)))
        .collect();
    upsert_changed(
        svc,
        conn,
        IdKind::Category,
        Collection::Categories,
        "categories",
        items,
        content_hash,
        tally,
        step,
        deadline,
    )
    .await?;
    Ok(())
}

pub(super) async fn products_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    let products: Vec<Product> = decode(page, "products", tally, step);
    let items = products
        .iter()
        .map(|p| (p.id, mapping::catalog::product_item(p, conn.branch_id)))
        .collect();
    upsert_changed(
        svc,
        conn,
        IdKind::Product,
        Collection::Products,
        "products",
        items,
        content_hash,
        tally,
        step,
        deadline,
    )
    .await?;
    Ok(())
}

/// Marker stored as a link's hash once a deletion has been reported, so overlapping windows do
/// not report it twice.
pub(super) const REMOVED: &str = "removed-in-kiotviet";

/// R-PRD-4: a product deleted in KiotViet is not deleted in Abaha; the owner is asked to do it.
pub(crate) async fn removed_products(
    svc: &Service,
    conn: &Connection,
    removed: &[i64],
    tally: &mut Tally,
    step: &mut PageStep,
) -> Result<(), JobError> {
    removed_records(svc, &conn.shop_id, IdKind::Product, removed, tally, step).await
}

/// Records deleted in KiotViet: nothing is deleted in Abaha; each record that was synced is
/// counted once, and a product is listed for the owner to delete by hand (R-PRD-4). KiotViet
/// repeats deletions on every page of a read and in every overlap window, so a reported link is
/// marked and later sightings are skipped.
pub(super) async fn removed_records(
    svc: &Service,
    shop: &str,
    kind: IdKind,
    removed: &[i64],
    tally: &mut Tally,
    step: &mut PageStep,
) -> Result<(), JobError> {
    if removed.is_empty() {
        return Ok(());
    }
    let links = svc.store.get_links(shop, kind, removed).await?;
    let mut marked: Vec<(i64, IdLink)> = Vec::new();
    for id in removed {
        let Some(link) = links.get(id) else { continue };
        if link.hash.as_deref() == Some(REMOVED) || marked.iter().any(|(m, _)| m == id) {
            continue;
        }
        tally.removed_in_kiotviet += 1;
        if kind != IdKind::Product {
            marked.push((
                *id,
                IdLink {
                    abaha_id: link.abaha_id.clone(),
                    hash: Some(REMOVED.into()),
                },
            ));
            continue;
        }
        step.manual_actions.push(ManualAction::new(
            ManualActionKind::DeleteProductInAbaha,
            Some(*id),
            Some(link.abaha_id.clone()),
            format!(
                "Product {} was deleted in KiotViet FnB. The sync never deletes in Abaha: delete product {} by hand in the Abaha admin if it should go.",
                id, link.abaha_id
            ),
        ));
        marked.push((
            *id,
            IdLink {
                abaha_id: link.abaha_id.clone(),
                hash: Some(REMOVED.into()),
            },
        ));
    }
    svc.store.put_links(shop, kind, &marked).await?;
    Ok(())
}

pub(super) async fn customers_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    let customers: Vec<Customer> = decode(page, "customers", tally, step);
    let mut items = Vec::with_capacity(customers.len());
    for c in &customers {
        match mapping::customers::customer_item(c) {
            Ok(item) => items.push((c.id, item)),
            // R-CUS-1: customers without a phone are skipped and counted with the reason.
            Err(reason) => tally.skip(reason.as_str()),
        }
    }
    upsert_changed(
        svc,
        conn,
        IdKind::Customer,
        Collection::Customers,
        "customers",
        items,
        crate::links::link_hash,
        tally,
        step,
        deadline,
    )
    .await?;
    Ok(())
}

/// Marker stored as an invoice link's hash once its cancellation has been reported.
pub(super) const CANCELLED: &str = "cancelled-in-kiotviet";

pub(super) async fn invoices_page(
    svc: &Service,
    conn: &Connection,
    page: &Page,
    tally: &mut Tally,
    step: &mut PageStep,
    deadline: Instant,
) -> Result<(), JobError> {
    use mapping::invoices::{InvoiceClass, classify};
    let shop = conn.shop_id.as_str();
    let invoices: Vec<Invoice> = decode(page, "invoices", tally, step);
    let (completed, others): (Vec<&Invoice>, Vec<&Invoice>) = invoices
        .iter()
        .partition(|i| classify(i) == InvoiceClass::Completed);

    // A completed invoice that came back cancelled: Abaha keeps a completed order; say so.
    let other_ids: Vec<i64> = others.iter().map(|i| i.id).collect();
    let synced = if other_ids.is_empty() {
        HashMap::new()
    } else {
        svc.store
            .get_links(shop, IdKind::Invoice, &other_ids)
            .await?
    };
    let mut marked = Vec::new();
    for inv in &others {
        let class = classify(inv);
        tally.skip(class.as_skip_reason().unwrap_or("unknown_status"));
        if let (InvoiceClass::Cancelled, Some(link)) = (&class, synced.get(&inv.id))
            && link.hash.as_deref() != Some(CANCELLED)
        {
            step.manual_actions.push(ManualAction::new(
                ManualActionKind::CancelOrderInAbaha,
                Some(inv.id),
                Some(link.abaha_id.clone()),
                format!(
                    "Invoice {} was cancelled in KiotViet FnB after it was synced as completed. Cancel Abaha order {} by hand if the sale did not happen.",
                    inv.code.clone().unwrap_or_default(), link.abaha_id
                ),
            ));
            marked.push((
                inv.id,
                IdLink {
                    abaha_id: link.abaha_id.clone(),
                    hash: Some(CANCELLED.into()),
                },
            ));
        }
    }
    svc.store.put_links(shop, IdKind::Invoice, &marked).await?;

    // R-INV-2: lines carry the Abaha product id when mapped; an invoice made from an order we
    // pushed carries that Abaha order's id.
    let product_ids: Vec<i64> = completed
        .iter()
        .flat_map(|i| i.invoice_details.iter().map(|d| d.product_id))
        .collect();
    let products = if product_ids.is_empty() {
        HashMap::new()
    } else {
        svc.product_links(shop, &product_ids).await?
    };
    let origins = super::origins::origins_of(svc, shop, &completed).await?;
    let items = completed
        .iter()
        .map(|inv| {
            let origin = origins.get(&inv.id);
            let item = mapping::invoices::order_item(
                inv,
                origin.map(|o| o.abaha_order_id.clone()),
                origin.and_then(|o| o.kiotviet_order_code.clone()),
                |pid| products.get(&pid).map(|l| l.abaha_id.clone()),
                // Abaha matches the buyer by KiotViet id (customers are pulled with theirs);
                // an invoice carries no phone, and a look-up per invoice is not worth a GET.
                mapping::invoices::order_customer(inv, None),
            );
            (inv.id, item)
        })
        .collect();
    upsert_changed(
        svc,
        conn,
        IdKind::Invoice,
        Collection::Orders,
        "invoices",
        items,
        content_hash,
        tally,
        step,
        deadline,
    )
    .await
}
