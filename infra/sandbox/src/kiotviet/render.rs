//! Records as KiotViet prints them: camelCase, absent values omitted, datetimes naive local with
//! the record's own number of fractional digits.

use serde_json::{Value, json};

use super::model::{
    Branch, Category, Customer, Delivery, ImageStyle, Invoice, Obj, Order, Product, Webhook,
    digits_for, fmt_dt, invoice_status_value, order_status_value,
};
use super::state::KvState;

impl KvState {
    pub(crate) fn render_branch(&self, b: &Branch) -> Value {
        let d = digits_for(b.id);
        Obj::new()
            .put("id", b.id)
            .put("branchName", b.name.clone())
            .put("branchCode", b.code.clone())
            .put("address", b.address.clone())
            .put("contactNumber", b.contact_number.clone())
            .put("retailerId", self.cfg.retailer_id)
            .put("createdDate", fmt_dt(b.created, d))
            .build()
    }

    /// `tree`: with `children` (recursively), as `hierachicalData=true` answers.
    pub(crate) fn render_category(&self, c: &Category, tree: bool) -> Value {
        let d = digits_for(c.id);
        let children: Vec<&Category> = self
            .categories
            .rows()
            .iter()
            .filter(|x| x.parent_id == Some(c.id))
            .collect();
        let mut o = Obj::new()
            .put("categoryId", c.id)
            .opt("parentId", c.parent_id)
            .put("categoryName", c.name.clone())
            .put("retailerId", self.cfg.retailer_id)
            .put("hasChild", !children.is_empty())
            .put("rank", c.rank)
            .put("createdDate", fmt_dt(c.created, d))
            .opt("modifiedDate", c.modified.map(|m| fmt_dt(m, d)));
        if tree {
            let mut children = children;
            children.sort_by_key(|x| (x.rank, x.id));
            let rendered: Vec<Value> = children
                .into_iter()
                .map(|x| self.render_category(x, true))
                .collect();
            o = o.put("children", rendered);
        }
        o.build()
    }

    pub(crate) fn render_inventories(&self, p: &Product) -> Vec<Value> {
        self.branches
            .rows()
            .iter()
            .map(|b| {
                let on_hand = p
                    .on_hand
                    .iter()
                    .find(|(id, _)| *id == b.id)
                    .map_or(0.0, |(_, q)| *q);
                json!({
                    "productId": p.id, "productCode": p.code, "productName": p.full_name(),
                    "branchId": b.id, "branchName": b.name,
                    "onHand": on_hand, "cost": p.cost, "reserved": 0.0,
                })
            })
            .collect()
    }

    pub(crate) fn render_product(&self, p: &Product, inventory: bool, pricebook: bool) -> Value {
        let d = digits_for(p.id);
        let category = p.category_id.and_then(|c| self.categories.get(c));
        let mut o = Obj::new()
            .put("id", p.id)
            .put("code", p.code.clone())
            .put("retailerId", self.cfg.retailer_id)
            .put("allowsSale", p.allows_sale)
            .put("name", p.name.clone())
            .put("fullName", p.full_name())
            .opt("categoryId", p.category_id)
            .opt("categoryName", category.map(|c| c.name.clone()))
            .put("productType", 2)
            .put("isTopping", p.is_topping)
            .put("isProcessedGoods", p.is_processed_goods)
            .put("isTimeType", false)
            .put("isTimeServices", false)
            .put("isRewardPoint", p.is_reward_point)
            .put("hasVariants", p.has_variants)
            .opt("description", p.description.clone())
            .opt("orderTemplate", p.order_template.clone())
            .opt("unit", p.unit.clone())
            .opt("masterUnitId", p.master_unit_id)
            .opt("masterProductId", p.master_product_id)
            .put("conversionValue", p.conversion_value)
            .put("basePrice", p.base_price)
            .opt("weight", p.weight)
            .put("isActive", p.is_active)
            .put("createdDate", fmt_dt(p.created, d))
            .opt("modifiedDate", p.modified.map(|m| fmt_dt(m, d)));
        if !p.attributes.is_empty() {
            let attrs: Vec<Value> = p
                .attributes
                .iter()
                .map(|(n, v)| json!({"productId": p.id, "attributeName": n, "attributeValue": v}))
                .collect();
            o = o.put("attributes", attrs);
        }
        let units: Vec<Value> = p
            .unit_ids
            .iter()
            .filter_map(|id| self.products.get(*id))
            .map(|u| {
                Obj::new()
                    .put("id", u.id)
                    .put("code", u.code.clone())
                    .put("name", u.name.clone())
                    .put("fullName", u.full_name())
                    .opt("unit", u.unit.clone())
                    .put("conversionValue", u.conversion_value)
                    .put("basePrice", u.base_price)
                    .build()
            })
            .collect();
        if !units.is_empty() {
            o = o.put("units", units);
        }
        if !p.images.is_empty() {
            let images: Vec<Value> = match p.image_style {
                ImageStyle::Urls => p.images.iter().map(|u| json!(u)).collect(),
                ImageStyle::Objects => p.images.iter().map(|u| json!({"Image": u})).collect(),
            };
            o = o.put("images", images);
        }
        let toppings: Vec<Value> = p
            .topping_ids
            .iter()
            .filter_map(|id| self.products.get(*id))
            .map(|t| {
                Obj::new()
                    .put("id", t.id)
                    .put("retailerId", self.cfg.retailer_id)
                    .put("code", t.code.clone())
                    .put("name", t.name.clone())
                    .put("fullName", t.full_name())
                    .opt("categoryId", t.category_id)
                    .put("basePrice", t.base_price)
                    .build()
            })
            .collect();
        if !toppings.is_empty() {
            o = o.put("toppings", toppings);
        }
        if inventory {
            o = o.put("inventories", self.render_inventories(p));
        }
        if pricebook {
            o = o.put(
                "priceBooks",
                json!([{
                    "priceBookId": 7, "priceBookName": "Giá giờ vàng", "productId": p.id,
                    "isActive": true, "startDate": "2026-01-01T00:00:00",
                    "endDate": "2026-12-31T23:59:00", "price": (p.base_price * 0.9).round(),
                }]),
            );
        }
        o.build()
    }

    pub(crate) fn render_customer(&self, c: &Customer, totals: bool) -> Value {
        let d = digits_for(c.id);
        let mut o = Obj::new()
            .put("id", c.id)
            .put("code", c.code.clone())
            .opt("name", c.name.clone())
            .opt("gender", c.gender)
            .opt("birthDate", c.birth_date.map(|b| fmt_dt(b, d)))
            .opt("contactNumber", c.contact_number.clone())
            .opt("address", c.address.clone())
            .opt("locationName", c.location_name.clone())
            .opt("wardName", c.ward_name.clone())
            .opt("email", c.email.clone())
            .opt("organization", c.organization.clone())
            .opt(
                if c.comment_plural {
                    "comments"
                } else {
                    "comment"
                },
                c.comment.clone(),
            )
            .opt("taxCode", c.tax_code.clone())
            .put("retailerId", self.cfg.retailer_id)
            .opt("branchId", c.branch_id)
            .put("debt", c.debt)
            .put("createdDate", fmt_dt(c.created, d))
            .opt("modifiedDate", c.modified.map(|m| fmt_dt(m, d)));
        if totals {
            o = o
                .put("totalInvoiced", c.total_invoiced)
                .put("totalPoint", c.total_point)
                .put("totalRevenue", c.total_invoiced);
        }
        o.build()
    }

    fn render_delivery(d: &Delivery, digits: u32) -> Value {
        Obj::new()
            .put("deliveryCode", d.delivery_code.clone())
            .put("status", d.status)
            .put("price", d.price)
            .opt("receiver", d.receiver.clone())
            .opt("contactNumber", d.contact_number.clone())
            .opt("address", d.address.clone())
            .opt("locationName", d.location_name.clone())
            .opt("wardName", d.ward_name.clone())
            .opt("expectedDelivery", d.expected.map(|e| fmt_dt(e, digits)))
            .opt(
                "partnerDelivery",
                d.partner
                    .as_ref()
                    .map(|(code, name)| json!({"code": code, "name": name})),
            )
            .build()
    }

    /// `detail`: the single-invoice form (always with payments, delivery and orderCode).
    pub(crate) fn render_invoice(
        &self,
        i: &Invoice,
        payments: bool,
        delivery: bool,
        detail: bool,
    ) -> Value {
        let d = digits_for(i.id);
        let show_order_code = detail || self.cfg.invoice_list_order_code;
        let lines: Vec<Value> = i
            .lines
            .iter()
            .map(|l| {
                Obj::new()
                    .put("productId", l.product_id)
                    .put("productCode", l.product_code.clone())
                    .put("productName", l.product_name.clone())
                    .opt("categoryName", l.category_name.clone())
                    .put("quantity", l.quantity)
                    .put("price", l.price)
                    .put("discount", l.discount)
                    .put("subTotal", l.sub_total())
                    .opt("note", l.note.clone())
                    .build()
            })
            .collect();
        let mut o = Obj::new()
            .put("id", i.id)
            .put("uuid", i.uuid.clone())
            .put("code", i.code.clone())
            .opt(
                "orderCode",
                i.order_code.clone().filter(|_| show_order_code),
            )
            .put("purchaseDate", fmt_dt(i.purchase, d))
            .put("branchId", i.branch_id)
            .opt("branchName", self.branch_name(i.branch_id))
            .put("soldById", i.sold_by.0)
            .put("soldByName", i.sold_by.1.clone())
            .opt("customerId", i.customer.as_ref().map(|c| c.id))
            .opt("customerCode", i.customer.as_ref().map(|c| c.code.clone()))
            .opt(
                "customerName",
                i.customer.as_ref().and_then(|c| c.name.clone()),
            )
            .put("total", i.total())
            .put("totalPayment", i.total_payment)
            .put("discount", i.discount)
            .put("status", i.status)
            .put("statusValue", invoice_status_value(i.status))
            .opt("description", i.description.clone())
            .put("usingCod", false)
            .put("retailerId", self.cfg.retailer_id)
            .put("createdDate", fmt_dt(i.created, d))
            .opt("modifiedDate", i.modified.map(|m| fmt_dt(m, d)))
            .put("invoiceDetails", lines);
        if payments || detail {
            let pays: Vec<Value> = i
                .payments
                .iter()
                .map(|p| {
                    json!({
                        "id": p.id, "code": p.code, "amount": p.amount, "method": p.method,
                        "status": 0, "statusValue": "Đã thanh toán",
                        "transDate": fmt_dt(p.trans_date, d),
                    })
                })
                .collect();
            o = o.put("payments", pays);
        }
        if delivery || detail {
            o = o.opt(
                "invoiceDelivery",
                i.delivery.as_ref().map(|x| Self::render_delivery(x, 7)),
            );
        }
        o.build()
    }

    pub(crate) fn render_order(&self, o: &Order, delivery: bool) -> Value {
        let d = digits_for(o.id);
        let lines: Vec<Value> = o
            .lines
            .iter()
            .map(|l| {
                Obj::new()
                    .put("uuid", l.uuid.clone())
                    .put("productId", l.product_id)
                    .put("productCode", l.product_code.clone())
                    .put("productName", l.product_name.clone())
                    .put("price", l.price)
                    .put("quantity", l.quantity)
                    .opt("note", l.note.clone())
                    .opt("rank", l.rank)
                    .put("isStartTimeCounter", false)
                    .build()
            })
            .collect();
        let mut v = Obj::new()
            .put("id", o.id)
            .put("code", o.code.clone())
            .put("purchaseDate", fmt_dt(o.purchase, d))
            .put("retailerId", self.cfg.retailer_id)
            .put("branchId", o.branch_id)
            .opt("branchName", self.branch_name(o.branch_id))
            .opt("customerId", o.customer.as_ref().map(|c| c.id))
            .opt("customerCode", o.customer.as_ref().map(|c| c.code.clone()))
            .opt(
                "customerName",
                o.customer.as_ref().and_then(|c| c.name.clone()),
            )
            .put("soldById", o.sold_by_id)
            .put("status", o.status)
            .put("statusValue", order_status_value(o.status))
            .put("total", o.total())
            .put("totalPayment", o.total_payment)
            .put(
                "totalQuantity",
                o.lines.iter().map(|l| l.quantity).sum::<f64>(),
            )
            .put("discount", o.discount)
            .opt("description", o.description.clone())
            .put("createdDate", fmt_dt(o.created, d))
            .opt("modifiedDate", o.modified.map(|m| fmt_dt(m, d)))
            .put("orderDetails", lines);
        if delivery {
            v = v.opt(
                "orderDelivery",
                o.delivery.as_ref().map(|x| Self::render_delivery(x, 7)),
            );
        }
        v.build()
    }

    pub(crate) fn webhook_json(&self, w: &Webhook) -> Value {
        Obj::new()
            .put("id", w.id)
            .put("type", w.kind.clone())
            .put("url", w.url.clone())
            .put("isActive", w.is_active)
            .opt("description", w.description.clone())
            .put("retailerId", self.cfg.retailer_id)
            .build()
    }

    pub(crate) fn product_json(&self, id: i64) -> Option<Value> {
        self.products
            .get(id)
            .map(|p| self.render_product(p, true, false))
    }

    pub(crate) fn customer_json(&self, id: i64) -> Option<Value> {
        self.customers
            .get(id)
            .map(|c| self.render_customer(c, true))
    }

    pub(crate) fn invoice_json(&self, id: i64) -> Option<Value> {
        self.invoices
            .get(id)
            .map(|i| self.render_invoice(i, true, true, true))
    }

    pub(crate) fn order_json(&self, id: i64) -> Option<Value> {
        self.orders.get(id).map(|o| self.render_order(o, true))
    }
}
