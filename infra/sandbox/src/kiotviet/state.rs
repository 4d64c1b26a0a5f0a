//! The simulator's state and every change to it, free of HTTP: the handlers, the admin routes and
//! the Rust handle all call these methods.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::model::{
    Branch, Category, Customer, CustomerRef, Delivery, ImageStyle, Invoice, InvoiceLine, Order,
    OrderLine, Payment, Product, Webhook, digits_for, parse_query_dt, quantize, vn_local,
};
use super::seed::{
    self, CASHIERS, FIRST_CATEGORY_ID, FIRST_CUSTOMER_ID, FIRST_INVOICE_ID, FIRST_ORDER_ID,
    FIRST_PAYMENT_ID, FIRST_PRODUCT_ID,
};
use super::table::Table;
use super::webhooks::{Event, WebhookDelivery};
use super::{
    CategoryPatch, CustomerPatch, InvoiceEdits, KvConfig, KvStats, LineInput, NewCategory,
    NewCustomer, NewInvoice, NewProduct, ProductPatch, ShopSettings, SimError,
};
use crate::common::{FaultInjector, Faults, field};

/// The simulator's clock: real time (plus an offset) or frozen.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Clock {
    Running { offset: Duration },
    Frozen(DateTime<Utc>),
}

impl Clock {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::Running { offset } => Utc::now() + *offset,
            Clock::Frozen(t) => *t,
        }
    }

    pub(crate) fn freeze(&mut self, t: DateTime<Utc>) {
        *self = Clock::Frozen(t);
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        match self {
            Clock::Running { offset } => *offset += d,
            Clock::Frozen(t) => *t += d,
        }
    }

    /// Runs on from where it stands.
    pub(crate) fn unfreeze(&mut self) {
        if let Clock::Frozen(t) = *self {
            *self = Clock::Running {
                offset: t - Utc::now(),
            };
        }
    }
}

pub(crate) const DELIVERY_DISABLED: &str =
    "Thiết lập \"Sử dụng tính năng giao hàng.\" đang không được bật";

pub(crate) struct KvState {
    pub cfg: KvConfig,
    pub clock: Clock,
    pub settings: ShopSettings,
    pub faults: FaultInjector,
    pub branches: Table<Branch>,
    pub categories: Table<Category>,
    pub products: Table<Product>,
    pub customers: Table<Customer>,
    pub invoices: Table<Invoice>,
    pub orders: Table<Order>,
    pub webhooks: Vec<Webhook>,
    /// token → expiry (simulator clock).
    pub tokens: HashMap<String, DateTime<Utc>>,
    /// Authenticated API requests, for `expire_token_every_n_requests`.
    pub api_requests: u64,
    /// Times of admitted GETs within the last hour.
    /// GET times per retailer (lower-cased), for the per-retailer GET quota.
    pub get_log: HashMap<String, VecDeque<DateTime<Utc>>>,
    pub stats: KvStats,
    pub created_customers: Vec<i64>,
    pub created_order_ids: Vec<i64>,
    /// One-shot faults of the next `POST /orders` calls, in order (the crash windows of an
    /// exactly-once push).
    pub order_faults: std::collections::VecDeque<super::OrderFault>,
    pub events: Vec<Event>,
    pub deliveries: Vec<WebhookDelivery>,
    next_payment_id: i64,
    next_webhook_id: i64,
    pub rng: StdRng,
}

fn invalid(msg: impl Into<String>) -> SimError {
    SimError::Invalid(msg.into())
}

fn not_found(msg: impl Into<String>) -> SimError {
    SimError::NotFound(msg.into())
}

fn next_id<T: super::table::Row>(t: &Table<T>, first: i64) -> i64 {
    t.max_id().map_or(first, |m| m + 1)
}

/// Digits only, so "0987 654 321" and "0987654321" are the same phone.
fn phone_key(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

impl KvState {
    pub(crate) fn new(cfg: KvConfig) -> Self {
        let clock = match cfg.now {
            Some(t) => Clock::Frozen(t),
            None => Clock::Running {
                offset: Duration::zero(),
            },
        };
        let mut st = KvState {
            settings: cfg.settings.clone(),
            faults: FaultInjector::new(cfg.faults.clone()),
            clock,
            branches: Table::new(Vec::new(), Vec::new()),
            categories: Table::new(Vec::new(), Vec::new()),
            products: Table::new(Vec::new(), Vec::new()),
            customers: Table::new(Vec::new(), Vec::new()),
            invoices: Table::new(Vec::new(), Vec::new()),
            orders: Table::new(Vec::new(), Vec::new()),
            webhooks: Vec::new(),
            tokens: HashMap::new(),
            api_requests: 0,
            get_log: HashMap::new(),
            stats: KvStats::default(),
            created_customers: Vec::new(),
            created_order_ids: Vec::new(),
            order_faults: std::collections::VecDeque::new(),
            events: Vec::new(),
            deliveries: Vec::new(),
            next_payment_id: FIRST_PAYMENT_ID,
            next_webhook_id: 1001,
            rng: StdRng::seed_from_u64(cfg.seed ^ 0x5EED),
            cfg,
        };
        st.load();
        st
    }

    /// (Re)generates the seeded data relative to the current clock.
    fn load(&mut self) {
        let data = seed::generate(&self.cfg, self.now_vn());
        self.next_payment_id = data
            .invoices
            .iter()
            .flat_map(|i| i.payments.iter().map(|p| p.id + 1))
            .max()
            .unwrap_or(FIRST_PAYMENT_ID);
        self.branches = Table::new(data.branches, Vec::new());
        self.categories = Table::new(data.categories, data.removed_categories);
        self.products = Table::new(data.products, data.removed_products);
        self.customers = Table::new(data.customers, data.removed_customers);
        self.invoices = Table::new(data.invoices, Vec::new());
        self.orders = Table::new(data.orders, Vec::new());
    }

    pub(crate) fn reset(&mut self) {
        self.load();
        self.settings = self.cfg.settings.clone();
        self.set_faults(self.cfg.faults.clone());
        self.webhooks.clear();
        self.get_log.clear();
        self.api_requests = 0;
        self.stats = KvStats::default();
        self.created_customers.clear();
        self.created_order_ids.clear();
        self.order_faults.clear();
        self.deliveries.clear();
        self.events.clear();
    }

    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.faults = FaultInjector::new(faults);
    }

    pub(crate) fn webhook_retry(&self) -> (u32, u64) {
        (self.cfg.webhook_attempts, self.cfg.webhook_retry_delay_ms)
    }

    pub(crate) fn now_vn(&self) -> NaiveDateTime {
        vn_local(self.clock.now())
    }

    /// "Now" as record `id` prints it.
    fn stamp(&self, id: i64) -> NaiveDateTime {
        quantize(self.now_vn(), digits_for(id))
    }

    pub(crate) fn central_branch(&self) -> i64 {
        self.cfg.branch_ids.first().copied().unwrap_or(0)
    }

    pub(crate) fn branch_name(&self, id: i64) -> Option<String> {
        self.branches.get(id).map(|b| b.name.clone())
    }

    pub(crate) fn issue_token(&mut self) -> String {
        let token: String = (0..48)
            .map(|_| {
                let n = self.rng.random_range(0..62u8);
                char::from(match n {
                    0..10 => b'0' + n,
                    10..36 => b'a' + n - 10,
                    _ => b'A' + n - 36,
                })
            })
            .collect();
        let expires = self.clock.now() + Duration::seconds(self.cfg.token_lifetime_secs as i64);
        self.tokens.insert(token.clone(), expires);
        self.stats.tokens_issued += 1;
        token
    }

    /// Whether `retailer` (trimmed, lower-cased) is a shop of this simulator: the configured
    /// retailer, or any name with the configured prefix.
    pub(crate) fn serves(&self, retailer: &str) -> bool {
        retailer.eq_ignore_ascii_case(&self.cfg.retailer)
            || self.cfg.retailer_prefix.as_deref().is_some_and(|p| {
                !p.is_empty()
                    && retailer.len() > p.len()
                    && retailer.starts_with(&p.to_ascii_lowercase())
            })
    }

    /// Whether `token` is live now; an expired one is forgotten.
    pub(crate) fn token_valid(&mut self, token: &str) -> bool {
        let now = self.clock.now();
        match self.tokens.get(token) {
            Some(exp) if *exp > now => true,
            Some(_) => {
                self.tokens.remove(token);
                false
            }
            None => false,
        }
    }

    // ---- categories -------------------------------------------------------------------------

    pub(crate) fn add_category(&mut self, c: NewCategory) -> Result<i64, SimError> {
        if c.name.trim().is_empty() {
            return Err(invalid("Tên nhóm hàng không được để trống"));
        }
        let parent_id = c.parent_id.filter(|p| *p != 0);
        if let Some(p) = parent_id
            && self.categories.get(p).is_none()
        {
            return Err(not_found(format!("Nhóm hàng cha {p} không tồn tại")));
        }
        let rank = c.rank.unwrap_or_else(|| {
            self.categories
                .rows()
                .iter()
                .filter(|x| x.parent_id == parent_id)
                .map(|x| x.rank + 1)
                .max()
                .unwrap_or(1)
        });
        let id = next_id(&self.categories, FIRST_CATEGORY_ID);
        let created = self.stamp(id);
        self.categories.push(Category {
            id,
            parent_id,
            name: c.name,
            rank,
            created,
            modified: None,
        });
        Ok(id)
    }

    pub(crate) fn update_category(
        &mut self,
        id: i64,
        patch: CategoryPatch,
    ) -> Result<(), SimError> {
        if self.categories.get(id).is_none() {
            return Err(not_found(format!("Nhóm hàng {id} không tồn tại")));
        }
        let parent = match patch.parent_id {
            Some(0) => Some(None),
            Some(p) if p == id => return Err(invalid("Nhóm hàng không thể là cha của chính nó")),
            Some(p) if self.categories.get(p).is_none() => {
                return Err(not_found(format!("Nhóm hàng cha {p} không tồn tại")));
            }
            Some(p) => Some(Some(p)),
            None => None,
        };
        let stamp = self.stamp(id);
        let c = self
            .categories
            .get_mut(id)
            .ok_or_else(|| not_found(format!("Nhóm hàng {id} không tồn tại")))?;
        if let Some(name) = patch.name {
            c.name = name;
        }
        if let Some(parent) = parent {
            c.parent_id = parent;
        }
        if let Some(rank) = patch.rank {
            c.rank = rank;
        }
        c.modified = Some(stamp);
        Ok(())
    }

    pub(crate) fn delete_category(&mut self, id: i64) -> Result<(), SimError> {
        if self
            .categories
            .rows()
            .iter()
            .any(|c| c.parent_id == Some(id))
        {
            return Err(invalid("Không thể xóa nhóm hàng đang có nhóm con"));
        }
        if self
            .products
            .rows()
            .iter()
            .any(|p| p.category_id == Some(id))
        {
            return Err(invalid("Không thể xóa nhóm hàng đang có hàng hóa"));
        }
        let at = self.stamp(id);
        self.categories
            .remove(id, at)
            .map(|_| ())
            .ok_or_else(|| not_found(format!("Nhóm hàng {id} không tồn tại")))
    }

    // ---- products ---------------------------------------------------------------------------

    pub(crate) fn add_product(&mut self, p: NewProduct) -> Result<i64, SimError> {
        if p.name.trim().is_empty() {
            return Err(invalid("Tên hàng hóa không được để trống"));
        }
        if let Some(c) = p.category_id
            && self.categories.get(c).is_none()
        {
            return Err(not_found(format!("Nhóm hàng {c} không tồn tại")));
        }
        for (what, id) in [
            ("masterProductId", p.master_product_id),
            ("masterUnitId", p.master_unit_id),
        ] {
            if let Some(id) = id
                && self.products.get(id).is_none()
            {
                return Err(not_found(format!("{what}: hàng hóa {id} không tồn tại")));
            }
        }
        self.check_toppings(&p.topping_ids)?;
        let id = next_id(&self.products, FIRST_PRODUCT_ID);
        let code = p
            .code
            .unwrap_or_else(|| format!("SP{:06}", id - FIRST_PRODUCT_ID + 1));
        if self.products.rows().iter().any(|x| x.code == code) {
            return Err(invalid(format!("Mã hàng {code} đã tồn tại")));
        }
        let central = self.central_branch();
        let product = Product {
            id,
            code,
            name: p.name,
            category_id: p.category_id,
            unit: p.unit,
            master_product_id: p.master_product_id,
            master_unit_id: p.master_unit_id,
            conversion_value: p.conversion_value.unwrap_or(1.0),
            has_variants: p.master_product_id.is_some() || !p.attributes.is_empty(),
            attributes: p
                .attributes
                .into_iter()
                .map(|a| (a.name, a.value))
                .collect(),
            is_topping: p.is_topping,
            is_processed_goods: p.on_hand.is_none() && !p.is_topping,
            allows_sale: p.allows_sale.unwrap_or(true),
            is_active: true,
            is_reward_point: true,
            base_price: p.base_price,
            cost: (p.base_price * 0.35).round(),
            weight: None,
            description: p.description,
            order_template: None,
            images: p.images,
            image_style: if p.images_as_objects {
                ImageStyle::Objects
            } else {
                ImageStyle::Urls
            },
            topping_ids: p.topping_ids,
            unit_ids: Vec::new(),
            on_hand: p.on_hand.map(|q| vec![(central, q)]).unwrap_or_default(),
            created: self.stamp(id),
            modified: None,
        };
        if let Some(master) = product.master_unit_id
            && let Some(m) = self.products.get_mut(master)
        {
            m.unit_ids.push(id);
        }
        if let Some(master) = product.master_product_id
            && let Some(m) = self.products.get_mut(master)
        {
            m.has_variants = true;
        }
        self.products.push(product);
        self.raise_product_update(id);
        Ok(id)
    }

    fn check_toppings(&self, ids: &[i64]) -> Result<(), SimError> {
        match ids
            .iter()
            .find(|t| !self.products.get(**t).is_some_and(|p| p.is_topping))
        {
            Some(t) => Err(invalid(format!("Hàng hóa {t} không phải là topping"))),
            None => Ok(()),
        }
    }

    pub(crate) fn update_product(&mut self, id: i64, patch: ProductPatch) -> Result<(), SimError> {
        if self.products.get(id).is_none() {
            return Err(not_found(format!("Hàng hóa {id} không tồn tại")));
        }
        if let Some(c) = patch.category_id
            && self.categories.get(c).is_none()
        {
            return Err(not_found(format!("Nhóm hàng {c} không tồn tại")));
        }
        if let Some(t) = &patch.topping_ids {
            self.check_toppings(t)?;
        }
        if let Some(code) = &patch.code
            && self
                .products
                .rows()
                .iter()
                .any(|x| &x.code == code && x.id != id)
        {
            return Err(invalid(format!("Mã hàng {code} đã tồn tại")));
        }
        let stamp = self.stamp(id);
        let central = self.central_branch();
        let stock_changed = patch.on_hand.is_some();
        let p = self
            .products
            .get_mut(id)
            .ok_or_else(|| not_found(format!("Hàng hóa {id} không tồn tại")))?;
        if let Some(v) = patch.code {
            p.code = v;
        }
        if let Some(v) = patch.name {
            p.name = v;
        }
        if let Some(v) = patch.category_id {
            p.category_id = Some(v);
        }
        if let Some(v) = patch.base_price {
            p.base_price = v;
        }
        if let Some(v) = patch.unit {
            p.unit = Some(v);
        }
        if let Some(v) = patch.description {
            p.description = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = patch.images {
            p.images = v;
        }
        if let Some(v) = patch.attributes {
            p.attributes = v.into_iter().map(|a| (a.name, a.value)).collect();
        }
        if let Some(v) = patch.topping_ids {
            p.topping_ids = v;
        }
        if let Some(v) = patch.allows_sale {
            p.allows_sale = v;
        }
        if let Some(v) = patch.is_active {
            p.is_active = v;
        }
        if let Some(q) = patch.on_hand {
            p.is_processed_goods = false;
            match p.on_hand.iter_mut().find(|(b, _)| *b == central) {
                Some(entry) => entry.1 = q,
                None => p.on_hand.push((central, q)),
            }
        }
        p.modified = Some(stamp);
        self.raise_product_update(id);
        if stock_changed {
            self.raise_stock_update(id);
        }
        Ok(())
    }

    pub(crate) fn delete_product(&mut self, id: i64) -> Result<(), SimError> {
        let at = self.stamp(id);
        self.products
            .remove(id, at)
            .ok_or_else(|| not_found(format!("Hàng hóa {id} không tồn tại")))?;
        let referrers: Vec<i64> = self
            .products
            .rows()
            .iter()
            .filter(|p| p.unit_ids.contains(&id) || p.topping_ids.contains(&id))
            .map(|p| p.id)
            .collect();
        for r in referrers {
            if let Some(p) = self.products.get_mut(r) {
                p.unit_ids.retain(|x| *x != id);
                p.topping_ids.retain(|x| *x != id);
            }
        }
        self.events.push(Event::removed("product.delete", id));
        Ok(())
    }

    fn raise_product_update(&mut self, id: i64) {
        if let Some(p) = self.products.get(id) {
            let data = self.render_product(p, true, false);
            self.events.push(Event::update("product.update", data));
        }
    }

    fn raise_stock_update(&mut self, id: i64) {
        if let Some(p) = self.products.get(id) {
            let rows = self.render_inventories(p);
            for row in rows {
                self.events.push(Event::update("stock.update", row));
            }
        }
    }

    // ---- customers --------------------------------------------------------------------------

    fn check_customer(&self, id: Option<i64>, c: &NewCustomer) -> Result<(), SimError> {
        if let Some(phone) = c
            .contact_number
            .as_deref()
            .map(phone_key)
            .filter(|p| !p.is_empty())
            && self.customers.rows().iter().any(|x| {
                Some(x.id) != id
                    && x.contact_number.as_deref().map(phone_key).as_deref() == Some(phone.as_str())
            })
        {
            return Err(invalid("Số điện thoại đã tồn tại"));
        }
        if let Some(code) = &c.code
            && self
                .customers
                .rows()
                .iter()
                .any(|x| Some(x.id) != id && x.code.eq_ignore_ascii_case(code))
        {
            return Err(invalid(format!("Mã khách hàng {code} đã tồn tại")));
        }
        Ok(())
    }

    pub(crate) fn add_customer(&mut self, c: NewCustomer) -> Result<i64, SimError> {
        self.check_customer(None, &c)?;
        let id = next_id(&self.customers, FIRST_CUSTOMER_ID);
        let code = c
            .code
            .unwrap_or_else(|| format!("KH{:06}", id - FIRST_CUSTOMER_ID + 1));
        self.customers.push(Customer {
            id,
            code,
            name: c.name.filter(|n| !n.is_empty()),
            gender: c.gender,
            birth_date: c.birth_date.and_then(|d| d.and_hms_opt(0, 0, 0)),
            contact_number: c.contact_number.filter(|n| !n.is_empty()),
            address: c.address,
            location_name: c.location_name,
            ward_name: c.ward_name,
            email: c.email,
            organization: None,
            comment: c.comment,
            comment_plural: false,
            tax_code: None,
            debt: 0.0,
            total_invoiced: 0.0,
            total_point: 0.0,
            branch_id: Some(self.central_branch()),
            created: self.stamp(id),
            modified: None,
        });
        self.raise_customer_update(id);
        Ok(id)
    }

    pub(crate) fn update_customer(&mut self, id: i64, c: CustomerPatch) -> Result<(), SimError> {
        if self.customers.get(id).is_none() {
            return Err(not_found(format!("Khách hàng {id} không tồn tại")));
        }
        self.check_customer(Some(id), &c)?;
        let stamp = self.stamp(id);
        let x = self
            .customers
            .get_mut(id)
            .ok_or_else(|| not_found(format!("Khách hàng {id} không tồn tại")))?;
        if let Some(v) = c.code {
            x.code = v;
        }
        if let Some(v) = c.name {
            x.name = Some(v);
        }
        if let Some(v) = c.contact_number {
            x.contact_number = Some(v);
        }
        if let Some(v) = c.gender {
            x.gender = Some(v);
        }
        if let Some(v) = c.birth_date {
            x.birth_date = v.and_hms_opt(0, 0, 0);
        }
        if let Some(v) = c.email {
            x.email = Some(v);
        }
        if let Some(v) = c.address {
            x.address = Some(v);
        }
        if let Some(v) = c.location_name {
            x.location_name = Some(v);
        }
        if let Some(v) = c.ward_name {
            x.ward_name = Some(v);
        }
        if let Some(v) = c.comment {
            x.comment = Some(v);
        }
        x.modified = Some(stamp);
        self.raise_customer_update(id);
        Ok(())
    }

    pub(crate) fn delete_customer(&mut self, id: i64) -> Result<(), SimError> {
        let at = self.stamp(id);
        self.customers
            .remove(id, at)
            .ok_or_else(|| not_found(format!("Khách hàng {id} không tồn tại")))?;
        self.events.push(Event::removed("customer.delete", id));
        Ok(())
    }

    fn raise_customer_update(&mut self, id: i64) {
        if let Some(c) = self.customers.get(id) {
            let data = self.render_customer(c, false);
            self.events.push(Event::update("customer.update", data));
        }
    }

    /// The body of `POST /customers` / `PUT /customers/{id}` (camelCase or PascalCase keys).
    pub(crate) fn customer_from_body(body: &Value) -> Result<NewCustomer, SimError> {
        if !body.is_object() {
            return Err(invalid("Dữ liệu khách hàng không hợp lệ"));
        }
        let text = |name: &str| {
            field(body, name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let birth_date = match field(body, "birthDate") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(parse_query_dt)
                    .map(|d| d.date())
                    .ok_or_else(|| invalid("Ngày sinh không hợp lệ"))?,
            ),
        };
        let gender = match field(body, "gender") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(invalid("Giới tính không hợp lệ")),
        };
        Ok(NewCustomer {
            code: text("code").filter(|c| !c.is_empty()),
            name: text("name"),
            contact_number: text("contactNumber"),
            gender,
            birth_date,
            email: text("email"),
            address: text("address"),
            location_name: text("locationName"),
            ward_name: text("wardName"),
            comment: text("comment").or_else(|| text("comments")),
        })
    }

    pub(crate) fn create_customer_api(&mut self, body: &Value) -> Result<Value, SimError> {
        let c = Self::customer_from_body(body)?;
        if c.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(invalid("Tên khách hàng không được để trống"));
        }
        let id = self.add_customer(c)?;
        self.created_customers.push(id);
        self.customer_json(id)
            .ok_or_else(|| not_found("Khách hàng không tồn tại"))
    }

    pub(crate) fn update_customer_api(&mut self, id: i64, body: &Value) -> Result<Value, SimError> {
        let c = Self::customer_from_body(body)?;
        if c.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("Tên khách hàng không được để trống"));
        }
        self.update_customer(id, c)?;
        self.customer_json(id)
            .ok_or_else(|| not_found("Khách hàng không tồn tại"))
    }

    pub(crate) fn created_customers(&self) -> Vec<Value> {
        self.created_customers
            .iter()
            .filter_map(|id| self.customer_json(*id))
            .collect()
    }

    // ---- invoices ---------------------------------------------------------------------------

    fn customer_ref(&self, id: Option<i64>) -> Result<Option<CustomerRef>, SimError> {
        match id.filter(|c| *c != 0) {
            None => Ok(None),
            Some(id) => self
                .customers
                .get(id)
                .map(|c| {
                    Some(CustomerRef {
                        id: c.id,
                        code: c.code.clone(),
                        name: c.name.clone(),
                    })
                })
                .ok_or_else(|| not_found(format!("Khách hàng {id} không tồn tại"))),
        }
    }

    fn invoice_lines(&self, lines: &[LineInput]) -> Result<Vec<InvoiceLine>, SimError> {
        if lines.is_empty() {
            return Err(invalid("Hóa đơn phải có ít nhất một hàng hóa"));
        }
        lines
            .iter()
            .map(|l| {
                let p = self
                    .products
                    .get(l.product_id)
                    .ok_or_else(|| not_found(format!("Hàng hóa {} không tồn tại", l.product_id)))?;
                if l.quantity <= 0.0 {
                    return Err(invalid("Số lượng phải lớn hơn 0"));
                }
                Ok(InvoiceLine {
                    product_id: p.id,
                    product_code: p.code.clone(),
                    product_name: p.full_name(),
                    category_name: p
                        .category_id
                        .and_then(|c| self.categories.get(c))
                        .map(|c| c.name.clone()),
                    quantity: l.quantity,
                    price: l.price.unwrap_or(p.base_price),
                    discount: l.discount.unwrap_or(0.0),
                    note: l.note.clone(),
                })
            })
            .collect()
    }

    fn check_invoice_status(status: i64) -> Result<i64, SimError> {
        match status {
            1 | 2 | 3 | 5 => Ok(status),
            _ => Err(invalid(format!("Trạng thái hóa đơn {status} không hợp lệ"))),
        }
    }

    fn pay(&mut self, inv: &mut Invoice, method: Option<String>) {
        inv.payments.clear();
        inv.total_payment = 0.0;
        if inv.status == 1 && inv.total() > 0.0 {
            let id = self.next_payment_id;
            self.next_payment_id += 1;
            inv.payments.push(Payment {
                id,
                code: format!("TT{:06}", id - FIRST_PAYMENT_ID + 1),
                amount: inv.total(),
                method: method.unwrap_or_else(|| "Cash".into()),
                trans_date: inv.purchase,
            });
            inv.total_payment = inv.total();
        }
    }

    pub(crate) fn add_invoice(&mut self, n: NewInvoice) -> Result<i64, SimError> {
        let branch_id = n.branch_id.unwrap_or(self.central_branch());
        if self.branches.get(branch_id).is_none() {
            return Err(not_found(format!("Chi nhánh {branch_id} không tồn tại")));
        }
        let customer = self.customer_ref(n.customer_id)?;
        let lines = self.invoice_lines(&n.lines)?;
        let status = Self::check_invoice_status(n.status.unwrap_or(1))?;
        let id = next_id(&self.invoices, FIRST_INVOICE_ID);
        let created = self.stamp(id);
        let cashier = CASHIERS[0];
        let mut inv = Invoice {
            id,
            uuid: seed::uuid(&mut self.rng),
            code: format!("HD{:06}", id - FIRST_INVOICE_ID + 1),
            order_code: n.order_code,
            purchase: n
                .purchase_date
                .map_or(created, |d| quantize(d, digits_for(id))),
            branch_id,
            sold_by: (cashier.0, cashier.1.to_string()),
            customer,
            discount: n.discount.unwrap_or(0.0),
            delivery_price: 0.0,
            total_payment: 0.0,
            status,
            description: None,
            lines,
            payments: Vec::new(),
            delivery: None,
            created,
            modified: None,
        };
        self.pay(&mut inv, n.payment_method);
        self.invoices.push(inv);
        Ok(id)
    }

    pub(crate) fn set_invoice_status(&mut self, id: i64, status: i64) -> Result<(), SimError> {
        let status = Self::check_invoice_status(status)?;
        let stamp = self.stamp(id);
        let inv = self
            .invoices
            .get_mut(id)
            .ok_or_else(|| not_found(format!("Hóa đơn {id} không tồn tại")))?;
        inv.status = status;
        inv.modified = Some(stamp);
        Ok(())
    }

    /// The till edits an invoice after the sale (lines, discount, status, payment): bumps
    /// modifiedDate, as KiotViet does for late edits (R-INV-3).
    pub(crate) fn edit_invoice(&mut self, id: i64, edits: InvoiceEdits) -> Result<(), SimError> {
        let mut inv = self
            .invoices
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(format!("Hóa đơn {id} không tồn tại")))?;
        if let Some(lines) = &edits.lines {
            inv.lines = self.invoice_lines(lines)?;
        }
        if let Some(status) = edits.status {
            inv.status = Self::check_invoice_status(status)?;
        }
        if let Some(discount) = edits.discount {
            inv.discount = discount;
        }
        let method = edits
            .payment_method
            .or_else(|| inv.payments.first().map(|p| p.method.clone()));
        self.pay(&mut inv, method);
        inv.modified = Some(self.stamp(id));
        if let Some(stored) = self.invoices.get_mut(id) {
            *stored = inv;
        }
        Ok(())
    }

    pub(crate) fn invoice_order(
        &mut self,
        order_id: i64,
        edits: InvoiceEdits,
    ) -> Result<i64, SimError> {
        let order = self
            .orders
            .get(order_id)
            .cloned()
            .ok_or_else(|| not_found(format!("Đơn đặt hàng {order_id} không tồn tại")))?;
        if order.status == 3 || order.status == 4 {
            return Err(invalid(format!(
                "Đơn đặt hàng {} đã hoàn thành hoặc đã hủy",
                order.code
            )));
        }
        let inputs = edits.lines.unwrap_or_else(|| {
            order
                .lines
                .iter()
                .map(|l| LineInput {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    price: Some(l.price),
                    discount: None,
                    note: l.note.clone(),
                })
                .collect()
        });
        let status = Self::check_invoice_status(edits.status.unwrap_or(1))?;
        let lines = self.invoice_lines(&inputs)?;
        let id = next_id(&self.invoices, FIRST_INVOICE_ID);
        let created = self.stamp(id);
        let mut inv = Invoice {
            id,
            uuid: seed::uuid(&mut self.rng),
            code: format!("HD{:06}", id - FIRST_INVOICE_ID + 1),
            order_code: Some(order.code.clone()),
            purchase: created,
            branch_id: order.branch_id,
            sold_by: (order.sold_by_id, CASHIERS[0].1.to_string()),
            customer: order.customer.clone(),
            discount: edits.discount.unwrap_or(order.discount),
            delivery_price: order.delivery.as_ref().map_or(0.0, |d| d.price),
            total_payment: 0.0,
            status,
            description: order.description.clone(),
            lines,
            payments: Vec::new(),
            delivery: order.delivery.clone(),
            created,
            modified: None,
        };
        self.pay(&mut inv, edits.payment_method);
        self.invoices.push(inv);
        let stamp = self.stamp(order_id);
        if let Some(o) = self.orders.get_mut(order_id) {
            o.status = if status == 2 { 4 } else { 3 };
            o.modified = Some(stamp);
        }
        Ok(id)
    }

    // ---- orders -----------------------------------------------------------------------------

    /// `POST /orders`: the FnB body of reference §5.5, validated as the shop would.
    pub(crate) fn create_order(&mut self, body: &Value) -> Result<Value, SimError> {
        if !body.is_object() {
            return Err(invalid("Dữ liệu đơn đặt hàng không hợp lệ"));
        }
        let branch_id = int(body, "BranchId").ok_or_else(|| invalid("Vui lòng chọn chi nhánh"))?;
        if self.branches.get(branch_id).is_none() {
            return Err(invalid(format!("Chi nhánh {branch_id} không tồn tại")));
        }
        let customer = self
            .customer_ref(int(body, "CustomerId"))
            .map_err(|e| invalid(e.message()))?;
        let details = field(body, "OrderDetails")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| invalid("Đơn đặt hàng phải có ít nhất một hàng hóa"))?;
        let mut lines = Vec::with_capacity(details.len());
        for d in details {
            let pid = int(d, "ProductId").ok_or_else(|| invalid("Thiếu ProductId của hàng hóa"))?;
            let p = self
                .products
                .get(pid)
                .ok_or_else(|| invalid(format!("Hàng hóa có id {pid} không tồn tại")))?;
            let quantity = num(d, "Quantity").unwrap_or(0.0);
            if quantity <= 0.0 {
                return Err(invalid(format!(
                    "Số lượng của hàng hóa {} phải lớn hơn 0",
                    p.code
                )));
            }
            lines.push(OrderLine {
                uuid: seed::uuid(&mut self.rng),
                product_id: p.id,
                product_code: p.code.clone(),
                product_name: p.full_name(),
                price: num(d, "Price").unwrap_or(p.base_price),
                quantity,
                note: field(d, "Note").and_then(Value::as_str).map(str::to_string),
                rank: int(d, "Rank"),
            });
        }
        let id = next_id(&self.orders, FIRST_ORDER_ID);
        let seq = id - FIRST_ORDER_ID + 1;
        // FnB reads `DeliveryDetail`; retail's `orderDelivery` is not an FnB field and is ignored.
        let delivery = match field(body, "DeliveryDetail") {
            None => None,
            Some(_) if !self.settings.delivery_enabled => return Err(invalid(DELIVERY_DISABLED)),
            Some(d) => Some(self.delivery_from(d, seq)?),
        };
        let created = self.stamp(id);
        let order = Order {
            id,
            code: format!("DH{seq:06}"),
            purchase: created,
            branch_id,
            customer,
            sold_by_id: CASHIERS[0].0,
            status: 1,
            discount: num(body, "Discount").unwrap_or(0.0),
            total_payment: 0.0,
            description: field(body, "Description")
                .and_then(Value::as_str)
                .map(str::to_string),
            lines,
            delivery,
            request: Some(body.clone()),
            created,
            modified: None,
        };
        let answer = self.render_order(&order, true);
        self.orders.push(order);
        self.created_order_ids.push(id);
        Ok(answer)
    }

    fn delivery_from(&self, d: &Value, seq: i64) -> Result<Delivery, SimError> {
        let text = |name: &str| field(d, name).and_then(Value::as_str).map(str::to_string);
        let expected = match field(d, "ExpectedDelivery") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(parse_query_dt)
                    .ok_or_else(|| invalid("Thời gian giao hàng dự kiến không hợp lệ"))?,
            ),
        };
        let partner = field(d, "PartnerDelivery").map(|p| {
            (
                field(p, "Code")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                field(p, "Name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        });
        Ok(Delivery {
            receiver: text("Receiver"),
            contact_number: text("ContactNumber"),
            address: text("Address"),
            location_name: text("LocationName"),
            ward_name: text("WardName"),
            delivery_code: text("DeliveryCode").unwrap_or_else(|| format!("GH{seq:06}")),
            expected,
            price: num(d, "Price").unwrap_or(0.0),
            status: int(d, "Status").unwrap_or(3),
            partner,
        })
    }

    pub(crate) fn created_orders(&self) -> Vec<Value> {
        self.created_order_ids
            .iter()
            .filter_map(|id| self.orders.get(*id))
            .map(|o| {
                let mut v = self.render_order(o, true);
                if let (Some(obj), Some(req)) = (v.as_object_mut(), &o.request) {
                    obj.insert("_request".into(), req.clone());
                }
                v
            })
            .collect()
    }

    // ---- webhooks ---------------------------------------------------------------------------

    pub(crate) fn add_webhook(&mut self, body: &Value) -> Result<Value, SimError> {
        let w = field(body, "Webhook")
            .filter(|w| w.is_object())
            .ok_or_else(|| invalid("Thiếu thông tin webhook"))?;
        let kind = field(w, "Type")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| invalid("Thiếu loại webhook (Type)"))?;
        // S3 says FnB sends only these five; anything else is refused rather than silently dead.
        const TYPES: [&str; 5] = [
            "customer.update",
            "customer.delete",
            "product.update",
            "product.delete",
            "stock.update",
        ];
        if !TYPES.contains(&kind.as_str()) {
            return Err(invalid(format!("Loại webhook {kind} không được hỗ trợ")));
        }
        let url = field(w, "Url")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or_else(|| invalid("Url webhook không hợp lệ"))?
            .to_string();
        if self.webhooks.iter().any(|h| h.kind == kind && h.url == url) {
            return Err(invalid("Webhook đã tồn tại"));
        }
        let hook = Webhook {
            id: self.next_webhook_id,
            kind,
            url,
            is_active: field(w, "IsActive")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            description: field(w, "Description")
                .and_then(Value::as_str)
                .map(str::to_string),
            secret: field(w, "Secret")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        self.next_webhook_id += 1;
        let answer = self.webhook_json(&hook);
        self.webhooks.push(hook);
        Ok(answer)
    }

    pub(crate) fn delete_webhook(&mut self, id: i64) -> Result<(), SimError> {
        let before = self.webhooks.len();
        self.webhooks.retain(|w| w.id != id);
        if self.webhooks.len() == before {
            return Err(not_found(format!("Webhook {id} không tồn tại")));
        }
        Ok(())
    }
}

impl SimError {
    pub(crate) fn message(&self) -> String {
        match self {
            SimError::NotFound(m) | SimError::Invalid(m) => m.clone(),
        }
    }
}

/// An integer field given as a number or a numeric string.
fn int(obj: &Value, name: &str) -> Option<i64> {
    match field(obj, name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn num(obj: &Value, name: &str) -> Option<f64> {
    match field(obj, name)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
