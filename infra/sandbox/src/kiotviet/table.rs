//! One entity's rows, the ids deleted from it, and offset paging over them.
//!
//! Rows are kept sorted by id (new ids are always larger). Orderings other than by id are
//! computed once per change and cached, so a page costs one pass over the rows, never a sort.

use std::collections::HashMap;

use chrono::NaiveDateTime;

use super::model::{Branch, Category, Customer, Invoice, Order, Product};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SortField {
    Id,
    Name,
    Code,
    Created,
    Modified,
    Purchase,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SortValue {
    Int(i64),
    Text(String),
    Time(NaiveDateTime),
}

pub(crate) trait Row {
    fn id(&self) -> i64;
    fn created(&self) -> NaiveDateTime;
    fn modified(&self) -> Option<NaiveDateTime>;
    /// `orderBy` names this entity understands (lower-case) and what they sort by.
    fn sort_field(order_by: &str) -> Option<SortField>;
    fn sort_value(&self, field: SortField) -> SortValue {
        match field {
            SortField::Id => SortValue::Int(self.id()),
            SortField::Created => SortValue::Time(self.created()),
            // Never-modified rows sort by their creation, as `lastModifiedFrom` filters them.
            _ => SortValue::Time(self.changed_at()),
        }
    }
    /// What `lastModifiedFrom` compares: modifiedDate, or createdDate if never modified.
    fn changed_at(&self) -> NaiveDateTime {
        self.modified().unwrap_or_else(|| self.created())
    }
}

pub(crate) struct Table<T> {
    rows: Vec<T>,
    /// (id, deleted at) in deletion order.
    removed: Vec<(i64, NaiveDateTime)>,
    orderings: HashMap<SortField, Vec<u32>>,
}

impl<T: Row> Table<T> {
    pub(crate) fn new(mut rows: Vec<T>, removed: Vec<(i64, NaiveDateTime)>) -> Self {
        rows.sort_by_key(Row::id);
        Table {
            rows,
            removed,
            orderings: HashMap::new(),
        }
    }

    pub(crate) fn rows(&self) -> &[T] {
        &self.rows
    }

    pub(crate) fn position(&self, id: i64) -> Option<usize> {
        self.rows.binary_search_by_key(&id, Row::id).ok()
    }

    pub(crate) fn get(&self, id: i64) -> Option<&T> {
        self.position(id).map(|i| &self.rows[i])
    }

    pub(crate) fn get_mut(&mut self, id: i64) -> Option<&mut T> {
        self.orderings.clear();
        let i = self.position(id)?;
        Some(&mut self.rows[i])
    }

    pub(crate) fn max_id(&self) -> Option<i64> {
        let live = self.rows.last().map(Row::id);
        let gone = self.removed.iter().map(|(id, _)| *id).max();
        live.max(gone)
    }

    /// Inserts a row; its id must be larger than every id ever used (callers allocate upwards).
    pub(crate) fn push(&mut self, row: T) {
        self.orderings.clear();
        match self.rows.last() {
            Some(last) if last.id() >= row.id() => {
                let at = self.rows.partition_point(|r| r.id() < row.id());
                self.rows.insert(at, row);
            }
            _ => self.rows.push(row),
        }
    }

    pub(crate) fn remove(&mut self, id: i64, at: NaiveDateTime) -> Option<T> {
        let i = self.position(id)?;
        self.orderings.clear();
        self.removed.push((id, at));
        Some(self.rows.remove(i))
    }

    /// Ids deleted at/after `since` (all of them without `since`), in deletion order.
    pub(crate) fn removed_since(&self, since: Option<NaiveDateTime>) -> Vec<i64> {
        self.removed
            .iter()
            .filter(|(_, at)| since.is_none_or(|s| *at >= s))
            .map(|(id, _)| *id)
            .collect()
    }

    /// One page: `(total matching, indices of the page's rows)`. Ties are broken by id, so the
    /// order is the same on every request and pages never overlap or skip.
    pub(crate) fn page(
        &mut self,
        field: SortField,
        desc: bool,
        offset: usize,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> (usize, Vec<usize>) {
        self.prepare_ordering(field);
        let order = self.orderings.get(&field);
        let rows = &self.rows;
        let mut total = 0;
        let mut page = Vec::with_capacity(limit.min(rows.len()));
        let mut visit = |i: usize| {
            if keep(&rows[i]) {
                if total >= offset && page.len() < limit {
                    page.push(i);
                }
                total += 1;
            }
        };
        match (order, desc) {
            (None, false) => (0..rows.len()).for_each(&mut visit),
            (None, true) => (0..rows.len()).rev().for_each(&mut visit),
            (Some(o), false) => o.iter().for_each(|i| visit(*i as usize)),
            (Some(o), true) => o.iter().rev().for_each(|i| visit(*i as usize)),
        }
        (total, page)
    }

    /// Caches the row order for `field` (id order needs none: it is the storage order).
    fn prepare_ordering(&mut self, field: SortField) {
        if field == SortField::Id {
            return;
        }
        let rows = &self.rows;
        self.orderings.entry(field).or_insert_with(|| {
            let mut keyed: Vec<(SortValue, u32)> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (r.sort_value(field), i as u32))
                .collect();
            // Index order is id order, so sorting on (value, index) breaks ties by id.
            keyed.sort_unstable();
            keyed.into_iter().map(|(_, i)| i).collect()
        });
    }
}

impl Row for Branch {
    fn id(&self) -> i64 {
        self.id
    }
    fn created(&self) -> NaiveDateTime {
        self.created
    }
    fn modified(&self) -> Option<NaiveDateTime> {
        None
    }
    fn sort_field(order_by: &str) -> Option<SortField> {
        match order_by {
            "id" => Some(SortField::Id),
            "name" | "branchname" => Some(SortField::Name),
            "code" | "branchcode" => Some(SortField::Code),
            "createddate" => Some(SortField::Created),
            "modifieddate" => Some(SortField::Modified),
            _ => None,
        }
    }
    fn sort_value(&self, field: SortField) -> SortValue {
        match field {
            SortField::Name => SortValue::Text(self.name.clone()),
            SortField::Code => SortValue::Text(self.code.clone()),
            _ => SortValue::Time(self.created),
        }
    }
}

impl Row for Category {
    fn id(&self) -> i64 {
        self.id
    }
    fn created(&self) -> NaiveDateTime {
        self.created
    }
    fn modified(&self) -> Option<NaiveDateTime> {
        self.modified
    }
    fn sort_field(order_by: &str) -> Option<SortField> {
        match order_by {
            "id" | "categoryid" => Some(SortField::Id),
            "name" | "categoryname" => Some(SortField::Name),
            "rank" => Some(SortField::Code),
            "createddate" => Some(SortField::Created),
            "modifieddate" => Some(SortField::Modified),
            _ => None,
        }
    }
    fn sort_value(&self, field: SortField) -> SortValue {
        match field {
            SortField::Name => SortValue::Text(self.name.clone()),
            SortField::Code => SortValue::Int(self.rank),
            SortField::Id => SortValue::Int(self.id),
            SortField::Created => SortValue::Time(self.created),
            _ => SortValue::Time(self.changed_at()),
        }
    }
}

impl Row for Product {
    fn id(&self) -> i64 {
        self.id
    }
    fn created(&self) -> NaiveDateTime {
        self.created
    }
    fn modified(&self) -> Option<NaiveDateTime> {
        self.modified
    }
    fn sort_field(order_by: &str) -> Option<SortField> {
        match order_by {
            "id" => Some(SortField::Id),
            "name" | "fullname" => Some(SortField::Name),
            "code" => Some(SortField::Code),
            "createddate" => Some(SortField::Created),
            "modifieddate" => Some(SortField::Modified),
            _ => None,
        }
    }
    fn sort_value(&self, field: SortField) -> SortValue {
        match field {
            SortField::Name => SortValue::Text(self.full_name()),
            SortField::Code => SortValue::Text(self.code.clone()),
            SortField::Id => SortValue::Int(self.id),
            SortField::Created => SortValue::Time(self.created),
            _ => SortValue::Time(self.changed_at()),
        }
    }
}

impl Row for Customer {
    fn id(&self) -> i64 {
        self.id
    }
    fn created(&self) -> NaiveDateTime {
        self.created
    }
    fn modified(&self) -> Option<NaiveDateTime> {
        self.modified
    }
    fn sort_field(order_by: &str) -> Option<SortField> {
        match order_by {
            "id" => Some(SortField::Id),
            "name" => Some(SortField::Name),
            "code" => Some(SortField::Code),
            "createddate" => Some(SortField::Created),
            "modifieddate" => Some(SortField::Modified),
            _ => None,
        }
    }
    fn sort_value(&self, field: SortField) -> SortValue {
        match field {
            SortField::Name => SortValue::Text(self.name.clone().unwrap_or_default()),
            SortField::Code => SortValue::Text(self.code.clone()),
            SortField::Id => SortValue::Int(self.id),
            SortField::Created => SortValue::Time(self.created),
            _ => SortValue::Time(self.changed_at()),
        }
    }
}

impl Row for Invoice {
    fn id(&self) -> i64 {
        self.id
    }
    fn created(&self) -> NaiveDateTime {
        self.created
    }
    fn modified(&self) -> Option<NaiveDateTime> {
        self.modified
    }
    fn sort_field(order_by: &str) -> Option<SortField> {
        match order_by {
            "id" => Some(SortField::Id),
            "code" => Some(SortField::Code),
            "purchasedate" => Some(SortField::Purchase),
            "createddate" => Some(SortField::Created),
            "modifieddate" => Some(SortField::Modified),
            _ => None,
        }
    }
    fn sort_value(&self, field: SortField) -> SortValue {
        match field {
            SortField::Code => SortValue::Text(self.code.clone()),
            SortField::Purchase => SortValue::Time(self.purchase),
            SortField::Id => SortValue::Int(self.id),
            SortField::Created => SortValue::Time(self.created),
            _ => SortValue::Time(self.changed_at()),
        }
    }
}

impl Row for Order {
    fn id(&self) -> i64 {
        self.id
    }
    fn created(&self) -> NaiveDateTime {
        self.created
    }
    fn modified(&self) -> Option<NaiveDateTime> {
        self.modified
    }
    fn sort_field(order_by: &str) -> Option<SortField> {
        Invoice::sort_field(order_by)
    }
    fn sort_value(&self, field: SortField) -> SortValue {
        match field {
            SortField::Code => SortValue::Text(self.code.clone()),
            SortField::Purchase => SortValue::Time(self.purchase),
            SortField::Id => SortValue::Int(self.id),
            SortField::Created => SortValue::Time(self.created),
            _ => SortValue::Time(self.changed_at()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(id: i64, name: &str) -> Category {
        Category {
            id,
            parent_id: None,
            name: name.into(),
            rank: 0,
            created: NaiveDateTime::default(),
            modified: None,
        }
    }

    #[test]
    fn pages_by_name_break_ties_by_id_and_never_overlap() {
        let mut t = Table::new(
            vec![cat(3, "b"), cat(1, "b"), cat(2, "a"), cat(4, "c")],
            vec![],
        );
        let ids = |t: &Table<Category>, idx: Vec<usize>| -> Vec<i64> {
            idx.into_iter().map(|i| t.rows()[i].id).collect()
        };
        let (total, p1) = t.page(SortField::Name, false, 0, 2, |_| true);
        let p1 = ids(&t, p1);
        let (_, p2) = t.page(SortField::Name, false, 2, 2, |_| true);
        let p2 = ids(&t, p2);
        assert_eq!(total, 4);
        assert_eq!((p1, p2), (vec![2, 1], vec![3, 4]));
        let (_, d) = t.page(SortField::Name, true, 0, 4, |c| c.id != 4);
        assert_eq!(ids(&t, d), vec![3, 1, 2]);
    }

    #[test]
    fn removed_ids_filter_by_time() {
        let mut t = Table::new(vec![cat(1, "a"), cat(2, "b")], vec![]);
        let t0 = NaiveDateTime::default();
        t.remove(1, t0);
        t.remove(2, t0 + chrono::Duration::hours(1));
        assert_eq!(t.removed_since(None), vec![1, 2]);
        assert_eq!(
            t.removed_since(Some(t0 + chrono::Duration::minutes(1))),
            vec![2]
        );
        assert_eq!(t.max_id(), Some(2));
    }
}
