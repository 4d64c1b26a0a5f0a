//! Seeded, deterministic shop data: a café menu in Vietnamese, customers and a month of sales.
//!
//! Each entity draws from its own generator (seed mixed with a per-entity constant), so changing
//! one count does not reshuffle the others. Dates are relative to the simulator's clock.

use chrono::{Duration, NaiveDateTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{
    Branch, Category, Customer, CustomerRef, Delivery, ImageStyle, Invoice, InvoiceLine, Order,
    OrderLine, Payment, Product, digits_for, quantize,
};
use super::{Counts, DataSize, KvConfig};

pub(crate) const FIRST_CATEGORY_ID: i64 = 100_001;
pub(crate) const FIRST_PRODUCT_ID: i64 = 3_000_001;
pub(crate) const FIRST_CUSTOMER_ID: i64 = 8_800_001;
pub(crate) const FIRST_INVOICE_ID: i64 = 251_000_001;
pub(crate) const FIRST_ORDER_ID: i64 = 9_100_001;
pub(crate) const FIRST_PAYMENT_ID: i64 = 77_000_001;

pub(crate) const CASHIERS: [(i64, &str); 3] = [
    (90641, "Thu ngân 1"),
    (90642, "Thu ngân 2"),
    (90643, "Quản lý ca"),
];

pub(crate) struct Dataset {
    pub branches: Vec<Branch>,
    pub categories: Vec<Category>,
    pub removed_categories: Vec<(i64, NaiveDateTime)>,
    pub products: Vec<Product>,
    pub removed_products: Vec<(i64, NaiveDateTime)>,
    pub customers: Vec<Customer>,
    pub removed_customers: Vec<(i64, NaiveDateTime)>,
    pub invoices: Vec<Invoice>,
    pub orders: Vec<Order>,
}

impl DataSize {
    pub(crate) fn counts(&self) -> Counts {
        match self {
            DataSize::Small => Counts {
                categories: 13,
                products: 60,
                customers: 80,
                invoices: 300,
            },
            DataSize::Medium => Counts {
                categories: 24,
                products: 400,
                customers: 3_000,
                invoices: 6_000,
            },
            DataSize::Large => Counts {
                categories: 40,
                products: 2_000,
                customers: 30_000,
                invoices: 60_000,
            },
            DataSize::Exact(c) => c.clone(),
        }
    }

    /// Presets also carry a few deleted records, so `includeRemoveIds` has something to say.
    fn seeds_deletions(&self) -> bool {
        !matches!(self, DataSize::Exact(_))
    }
}

/// Categories in parent-before-child order: (name, parent index, rank).
const CATEGORIES: [(&str, Option<usize>, i64); 13] = [
    ("Cà phê", None, 1),
    ("Cà phê truyền thống", Some(0), 1),
    ("Cà phê pha máy", Some(0), 2),
    ("Trà", None, 2),
    ("Trà trái cây", Some(3), 1),
    ("Trà sữa", Some(3), 2),
    ("Topping", None, 5),
    ("Sinh tố & Nước ép", None, 3),
    ("Sinh tố", Some(7), 1),
    ("Nước ép", Some(7), 2),
    ("Đồ ăn", None, 4),
    ("Bánh mì", Some(10), 1),
    ("Bánh ngọt", Some(10), 2),
];
const TOPPING_CATEGORY: usize = 6;
const FOOD_CATEGORIES: [usize; 2] = [11, 12];

struct MenuItem {
    name: &'static str,
    category: usize,
    price: u32,
    sized: bool,
    /// Base unit, another unit and its conversion factor.
    units: Option<(&'static str, &'static str, f64)>,
}

const fn item(name: &'static str, category: usize, price: u32) -> MenuItem {
    MenuItem {
        name,
        category,
        price,
        sized: false,
        units: None,
    }
}

const fn sized(name: &'static str, category: usize, price: u32) -> MenuItem {
    MenuItem {
        name,
        category,
        price,
        sized: true,
        units: None,
    }
}

const fn with_unit(
    name: &'static str,
    category: usize,
    price: u32,
    units: (&'static str, &'static str, f64),
) -> MenuItem {
    MenuItem {
        name,
        category,
        price,
        sized: false,
        units: Some(units),
    }
}

const TOPPINGS: [(&str, u32); 6] = [
    ("Trân châu đen", 5_000),
    ("Thạch đào", 7_000),
    ("Kem cheese", 10_000),
    ("Thạch cà phê", 7_000),
    ("Pudding trứng", 8_000),
    ("Shot espresso", 12_000),
];

const MENU: [MenuItem; 40] = [
    sized("Cà phê đen đá", 1, 25_000),
    sized("Cà phê sữa đá", 1, 29_000),
    sized("Bạc xỉu", 1, 32_000),
    item("Cà phê muối", 1, 35_000),
    item("Cà phê trứng", 1, 39_000),
    with_unit("Cà phê phin giấy", 1, 30_000, ("Ly", "Bình 1L", 4.0)),
    item("Espresso", 2, 35_000),
    sized("Americano", 2, 39_000),
    sized("Cappuccino", 2, 45_000),
    sized("Latte", 2, 45_000),
    item("Caramel macchiato", 2, 55_000),
    item("Mocha", 2, 49_000),
    sized("Trà đào cam sả", 4, 45_000),
    item("Trà vải", 4, 42_000),
    item("Trà chanh dây", 4, 39_000),
    with_unit("Trà tắc", 4, 25_000, ("Ly", "Bình 1L", 4.0)),
    item("Trà dâu tằm", 4, 42_000),
    item("Trà ổi hồng", 4, 42_000),
    sized("Trà sữa trân châu", 5, 35_000),
    item("Trà sữa matcha", 5, 42_000),
    item("Hồng trà sữa", 5, 39_000),
    sized("Trà sữa khoai môn", 5, 39_000),
    sized("Sữa tươi trân châu đường đen", 5, 42_000),
    item("Sinh tố bơ", 8, 45_000),
    item("Sinh tố xoài", 8, 42_000),
    item("Sinh tố dâu", 8, 45_000),
    item("Sinh tố mãng cầu", 8, 45_000),
    item("Nước ép cam", 9, 40_000),
    item("Nước ép dưa hấu", 9, 35_000),
    item("Nước ép ổi", 9, 35_000),
    item("Nước ép thơm", 9, 35_000),
    item("Bánh mì thịt", 11, 25_000),
    item("Bánh mì ốp la", 11, 22_000),
    item("Bánh mì chả cá", 11, 25_000),
    item("Bánh mì xíu mại", 11, 25_000),
    item("Bánh tiramisu", 12, 45_000),
    with_unit("Bánh flan", 12, 18_000, ("Cái", "Hộp 6 cái", 6.0)),
    item("Croissant bơ", 12, 32_000),
    item("Bánh bông lan trứng muối", 12, 35_000),
    with_unit("Bánh su kem", 12, 25_000, ("Cái", "Hộp 10 cái", 10.0)),
];

const DRINK_KINDS: [&str; 6] = ["Trà", "Sinh tố", "Nước ép", "Soda", "Sữa chua", "Đá xay"];
const FLAVOURS: [&str; 16] = [
    "xoài",
    "dâu",
    "vải",
    "đào",
    "cam",
    "bưởi",
    "ổi",
    "thơm",
    "chanh dây",
    "việt quất",
    "kiwi",
    "dưa lưới",
    "mãng cầu",
    "chanh",
    "táo",
    "nho",
];
const EXTRAS: [&str; 8] = [
    "",
    " hạt chia",
    " nha đam",
    " bạc hà",
    " mật ong",
    " kem muối",
    " thạch dừa",
    " hoa đậu biếc",
];
const DESCRIPTIONS: [&str; 4] = [
    "Pha từ nguyên liệu tươi mỗi ngày.",
    "Món bán chạy của quán.",
    "Vị ngọt thanh, thơm mát.",
    "Có thể yêu cầu ít đá, ít đường.",
];
const NOTES: [&str; 6] = [
    "ít đá",
    "không đường",
    "ít ngọt",
    "nhiều sữa",
    "mang đi",
    "không hành",
];

const FAMILY: [&str; 16] = [
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
    "Hồ", "Ngô", "Dương", "Lý",
];
const MIDDLE: [&str; 9] = [
    "Văn", "Minh", "Ngọc", "Thanh", "Đức", "Hữu", "Gia", "Bảo", "Quốc",
];
const GIVEN: [&str; 24] = [
    "An", "Bình", "Châu", "Dung", "Hà", "Hải", "Hạnh", "Hùng", "Lan", "Linh", "Long", "Mai", "Nam",
    "Phương", "Quân", "Thảo", "Trang", "Tuấn", "Vy", "Yến", "Khoa", "Nhi", "Tâm", "Đạt",
];
const PHONE_PREFIXES: [&str; 16] = [
    "090", "091", "093", "094", "096", "097", "098", "086", "088", "070", "079", "077", "083",
    "085", "032", "036",
];
const STREETS: [&str; 8] = [
    "Lê Lợi",
    "Nguyễn Huệ",
    "Hai Bà Trưng",
    "Điện Biên Phủ",
    "Cách Mạng Tháng 8",
    "Võ Văn Tần",
    "Pasteur",
    "Nguyễn Trãi",
];
const LOCATIONS: [(&str, &str); 6] = [
    ("Hồ Chí Minh - Quận 1", "Phường Bến Nghé"),
    ("Hồ Chí Minh - Quận 3", "Phường Võ Thị Sáu"),
    ("Hồ Chí Minh - Quận 7", "Phường Tân Phong"),
    ("Hồ Chí Minh - Thành phố Thủ Đức", "Phường Thảo Điền"),
    ("Hà Nội - Quận Hoàn Kiếm", "Phường Hàng Bạc"),
    ("Đà Nẵng - Quận Hải Châu", "Phường Thạch Thang"),
];
const BRANCH_NAMES: [&str; 4] = [
    "Chi nhánh trung tâm",
    "Chi nhánh Quận 3",
    "Chi nhánh Thủ Đức",
    "Chi nhánh Quận 7",
];

/// Mixes the entity name into the seed, so each entity has its own stream.
fn rng_for(seed: u64, entity: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ entity.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

pub(crate) fn uuid(rng: &mut impl Rng) -> String {
    // Version 4, RFC 4122 variant, as .NET's Guid.NewGuid() prints it.
    let a: u128 = rng.random::<u128>() & !(0xF << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A unique phone per index: the 7-digit tail is a bijection of the index.
pub(crate) fn phone_for(index: u64) -> String {
    let prefix = PHONE_PREFIXES[(index % PHONE_PREFIXES.len() as u64) as usize];
    let tail = (index.wrapping_mul(7_919).wrapping_add(1_234_567)) % 10_000_000;
    format!("{prefix}{tail:07}")
}

pub(crate) fn generate(cfg: &KvConfig, now: NaiveDateTime) -> Dataset {
    let counts = cfg.size.counts();
    let deletions = cfg.size.seeds_deletions();
    let branches = branches(cfg, now);
    let (categories, removed_categories) = categories(cfg.seed, counts.categories, deletions, now);
    let (products, removed_products) = products(
        cfg.seed,
        counts.products,
        deletions,
        &categories,
        &branches,
        now,
    );
    let (customers, removed_customers) =
        customers(cfg.seed, counts.customers, deletions, &branches, now);
    let (invoices, orders) = sales(
        cfg,
        counts.invoices,
        &branches,
        &categories,
        &products,
        &customers,
        now,
    );
    Dataset {
        branches,
        categories,
        removed_categories,
        products,
        removed_products,
        customers,
        removed_customers,
        invoices,
        orders,
    }
}

fn branches(cfg: &KvConfig, now: NaiveDateTime) -> Vec<Branch> {
    cfg.branch_ids
        .iter()
        .enumerate()
        .map(|(i, id)| Branch {
            id: *id,
            name: BRANCH_NAMES
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("Chi nhánh {}", i + 1)),
            code: format!("CN{:03}", i + 1),
            address: format!("{} {}", 12 + i * 7, STREETS[i % STREETS.len()]),
            contact_number: format!("0909{:06}", 100 + i),
            created: quantize(now - Duration::days(700 - i as i64 * 30), digits_for(*id)),
        })
        .collect()
}

/// A time `days_ago_max..days_ago_min` days before `now`, truncated to the record's precision.
fn past(
    rng: &mut StdRng,
    now: NaiveDateTime,
    days_ago_min: i64,
    days_ago_max: i64,
    id: i64,
) -> NaiveDateTime {
    let span = (days_ago_max - days_ago_min).max(1) * 86_400;
    let secs = days_ago_min * 86_400 + rng.random_range(0..span);
    let nanos = rng.random_range(0..1_000_000_000i64);
    quantize(
        now - Duration::seconds(secs) - Duration::nanoseconds(nanos),
        digits_for(id),
    )
}

/// Sometimes a later modification, never after `now`.
fn maybe_modified(
    rng: &mut StdRng,
    created: NaiveDateTime,
    now: NaiveDateTime,
    p: f64,
    id: i64,
) -> Option<NaiveDateTime> {
    if !rng.random_bool(p) {
        return None;
    }
    let room = (now - created).num_seconds();
    if room <= 1 {
        return None;
    }
    let t = created + Duration::seconds(rng.random_range(1..room));
    Some(quantize(t, digits_for(id)))
}

fn categories(
    seed: u64,
    count: usize,
    deletions: bool,
    now: NaiveDateTime,
) -> (Vec<Category>, Vec<(i64, NaiveDateTime)>) {
    let mut rng = rng_for(seed, 1);
    let mut out: Vec<Category> = Vec::with_capacity(count + 1);
    let push =
        |rng: &mut StdRng, out: &mut Vec<Category>, name: String, parent: Option<usize>, rank| {
            let id = FIRST_CATEGORY_ID + out.len() as i64;
            let created = past(rng, now, 200, 400, id);
            let modified = maybe_modified(rng, created, now, 0.3, id);
            let parent_id = parent.and_then(|p| out.get(p)).map(|c: &Category| c.id);
            out.push(Category {
                id,
                parent_id,
                name,
                rank,
                created,
                modified,
            });
        };
    for (name, parent, rank) in CATEGORIES.iter().take(count) {
        push(&mut rng, &mut out, name.to_string(), *parent, *rank);
    }
    let roots = [0usize, 3, 7, 10];
    let mut n = 1;
    while out.len() < count {
        let parent = roots[n % roots.len()];
        push(
            &mut rng,
            &mut out,
            format!("Món theo mùa {n}"),
            Some(parent),
            10 + n as i64,
        );
        n += 1;
    }
    let mut removed = Vec::new();
    if deletions {
        push(&mut rng, &mut out, "Món ngừng bán".into(), None, 99);
        if let Some(gone) = out.pop() {
            removed.push((gone.id, past(&mut rng, now, 2, 20, gone.id)));
        }
    }
    (out, removed)
}

fn products(
    seed: u64,
    count: usize,
    deletions: bool,
    categories: &[Category],
    branches: &[Branch],
    now: NaiveDateTime,
) -> (Vec<Product>, Vec<(i64, NaiveDateTime)>) {
    let mut b = ProductBuilder {
        rng: rng_for(seed, 2),
        out: Vec::with_capacity(count + 2),
        categories,
        branches,
        now,
    };
    let mut toppings = Vec::new();
    for (name, price) in TOPPINGS {
        if b.out.len() >= count {
            break;
        }
        toppings.push(b.push(name, TOPPING_CATEGORY, price, |p| p.is_topping = true));
    }
    for m in &MENU {
        if b.out.len() >= count {
            break;
        }
        b.family(m.name, m, &toppings, count);
    }
    // Procedurally named drinks for the larger sizes.
    let leaves: Vec<usize> = (0..categories.len())
        .filter(|i| {
            *i != TOPPING_CATEGORY
                && !categories
                    .iter()
                    .any(|c| c.parent_id == Some(categories[*i].id))
        })
        .filter(|i| !FOOD_CATEGORIES.contains(i))
        .collect();
    let mut n = 0usize;
    while b.out.len() < count {
        let kind = DRINK_KINDS[n % DRINK_KINDS.len()];
        let flavour = FLAVOURS[(n / DRINK_KINDS.len()) % FLAVOURS.len()];
        let extra = EXTRAS[(n / (DRINK_KINDS.len() * FLAVOURS.len())) % EXTRAS.len()];
        let round = n / (DRINK_KINDS.len() * FLAVOURS.len() * EXTRAS.len());
        let name = if round == 0 {
            format!("{kind} {flavour}{extra}")
        } else {
            format!("{kind} {flavour}{extra} {}", round + 1)
        };
        let category = leaves.get(n % leaves.len().max(1)).copied().unwrap_or(0);
        let price = 30_000 + (n as u32 % 8) * 3_000;
        let shape = MenuItem {
            name: "",
            category,
            price,
            sized: n.is_multiple_of(5),
            units: None,
        };
        b.family(&name, &shape, &toppings, count);
        n += 1;
    }
    let mut removed = Vec::new();
    if deletions {
        for name in ["Cà phê cốt dừa", "Trà atiso"] {
            b.push(name, 1, 35_000, |_| {});
            if let Some(gone) = b.out.pop() {
                let at = past(&mut b.rng, now, 1, 15, gone.id);
                removed.push((gone.id, at));
            }
        }
    }
    (b.out, removed)
}

struct ProductBuilder<'a> {
    rng: StdRng,
    out: Vec<Product>,
    categories: &'a [Category],
    branches: &'a [Branch],
    now: NaiveDateTime,
}

impl ProductBuilder<'_> {
    /// A product with its size variants or its other unit, as separate product ids.
    fn family(&mut self, name: &str, m: &MenuItem, toppings: &[i64], count: usize) {
        let is_drink = !FOOD_CATEGORIES.contains(&m.category);
        let chosen: Vec<i64> = if is_drink && !toppings.is_empty() {
            let k = self.rng.random_range(0..=3usize.min(toppings.len()));
            let start = self.rng.random_range(0..toppings.len());
            (0..k)
                .map(|j| toppings[(start + j) % toppings.len()])
                .collect()
        } else {
            Vec::new()
        };
        let base_unit = m
            .units
            .map(|u| u.0)
            .unwrap_or(if is_drink { "Ly" } else { "Cái" });
        let master = self.push(name, m.category, m.price, |p| {
            p.unit = Some(base_unit.to_string());
            p.topping_ids = chosen.clone();
            p.is_processed_goods = is_drink;
            if m.sized {
                p.has_variants = true;
                p.attributes = vec![("Size".into(), "M".into())];
            }
        });
        if m.sized && self.out.len() < count {
            self.push(name, m.category, m.price + 6_000, |p| {
                p.unit = Some(base_unit.to_string());
                p.topping_ids = chosen.clone();
                p.is_processed_goods = is_drink;
                p.has_variants = true;
                p.master_product_id = Some(master);
                p.attributes = vec![("Size".into(), "L".into())];
            });
        }
        if let Some((_, other, factor)) = m.units
            && self.out.len() < count
        {
            let price = ((m.price as f64 * factor * 0.9) / 1_000.0).round() as u32 * 1_000;
            let unit_id = self.push(name, m.category, price, |p| {
                p.unit = Some(other.to_string());
                p.master_unit_id = Some(master);
                p.conversion_value = factor;
                p.is_processed_goods = is_drink;
            });
            if let Some(base) = self.out.iter_mut().find(|p| p.id == master) {
                base.unit_ids.push(unit_id);
            }
        }
    }

    fn push(
        &mut self,
        name: &str,
        category: usize,
        price: u32,
        tweak: impl FnOnce(&mut Product),
    ) -> i64 {
        let id = FIRST_PRODUCT_ID + self.out.len() as i64;
        let rng = &mut self.rng;
        let created = past(rng, self.now, 60, 400, id);
        let modified = maybe_modified(rng, created, self.now, 0.3, id);
        let code = format!("SP{:06}", self.out.len() + 1);
        let images = match id % 3 {
            0 => Vec::new(),
            1 => vec![format!(
                "https://cdn.kiotviet.vn/sandbox/{}.jpg",
                code.to_lowercase()
            )],
            _ => vec![
                format!(
                    "https://cdn.kiotviet.vn/sandbox/{}.jpg",
                    code.to_lowercase()
                ),
                format!(
                    "https://cdn.kiotviet.vn/sandbox/{}-2.jpg",
                    code.to_lowercase()
                ),
            ],
        };
        let mut p = Product {
            id,
            code,
            name: name.to_string(),
            category_id: self
                .categories
                .get(category)
                .or(self.categories.first())
                .map(|c| c.id),
            unit: None,
            master_product_id: None,
            master_unit_id: None,
            conversion_value: 1.0,
            attributes: Vec::new(),
            has_variants: false,
            is_topping: false,
            is_processed_goods: false,
            allows_sale: !rng.random_bool(0.03),
            is_active: !rng.random_bool(0.02),
            is_reward_point: rng.random_bool(0.7),
            base_price: price as f64,
            cost: (price as f64 * 0.35).round(),
            weight: (id % 7 == 0).then_some(0.0),
            description: (id % 4 == 1).then(|| DESCRIPTIONS[(id as usize / 4) % 4].to_string()),
            order_template: (id % 6 == 2).then(|| "ít đá, ít đường".to_string()),
            images,
            image_style: if id % 2 == 0 {
                ImageStyle::Urls
            } else {
                ImageStyle::Objects
            },
            topping_ids: Vec::new(),
            unit_ids: Vec::new(),
            on_hand: Vec::new(),
            created,
            modified,
        };
        tweak(&mut p);
        // Drinks are made to order (no stock); food and toppings are counted per branch.
        if !p.is_processed_goods {
            p.on_hand = self
                .branches
                .iter()
                .map(|b| (b.id, rng.random_range(0..60) as f64))
                .collect();
        }
        self.out.push(p);
        id
    }
}

fn customers(
    seed: u64,
    count: usize,
    deletions: bool,
    branches: &[Branch],
    now: NaiveDateTime,
) -> (Vec<Customer>, Vec<(i64, NaiveDateTime)>) {
    let mut rng = rng_for(seed, 3);
    let extra = if deletions { 3 } else { 0 };
    let central = branches.first().map(|b| b.id);
    let mut out: Vec<Customer> = (0..count + extra)
        .map(|i| {
            let id = FIRST_CUSTOMER_ID + i as i64;
            let created = past(&mut rng, now, 1, 730, id);
            let modified = maybe_modified(&mut rng, created, now, 0.4, id);
            let given = GIVEN[rng.random_range(0..GIVEN.len())];
            let gender = match rng.random_range(0..10) {
                0 => None,
                n => Some(n % 2 == 1),
            };
            let middle = match gender {
                Some(false) => "Thị",
                _ => MIDDLE[rng.random_range(0..MIDDLE.len())],
            };
            let name = format!(
                "{} {} {}",
                FAMILY[rng.random_range(0..FAMILY.len())],
                middle,
                given
            );
            let has_address = rng.random_bool(0.5);
            let (location, ward) = LOCATIONS[rng.random_range(0..LOCATIONS.len())];
            Customer {
                id,
                code: format!("KH{:06}", i + 1),
                name: (!rng.random_bool(0.08)).then_some(name),
                gender,
                birth_date: rng.random_bool(0.6).then(|| {
                    let days = rng.random_range(18 * 365..60 * 365);
                    (now - Duration::days(days))
                        .date()
                        .and_hms_opt(0, 0, 0)
                        .unwrap_or(now)
                }),
                contact_number: (!rng.random_bool(0.1)).then(|| phone_for(i as u64)),
                address: has_address.then(|| {
                    format!(
                        "{} {}",
                        rng.random_range(1..300),
                        STREETS[rng.random_range(0..STREETS.len())]
                    )
                }),
                location_name: has_address.then(|| location.to_string()),
                ward_name: has_address.then(|| ward.to_string()),
                email: rng
                    .random_bool(0.3)
                    .then(|| format!("khach{}@example.com", i + 1)),
                organization: rng
                    .random_bool(0.05)
                    .then(|| "Công ty TNHH ABC".to_string()),
                comment: rng.random_bool(0.2).then(|| "Khách quen".to_string()),
                comment_plural: id % 5 == 0,
                tax_code: None,
                debt: 0.0,
                total_invoiced: (rng.random_range(0..200) * 10_000) as f64,
                total_point: rng.random_range(0..300) as f64,
                branch_id: central,
                created,
                modified,
            }
        })
        .collect();
    let mut removed = Vec::new();
    for _ in 0..extra {
        if let Some(gone) = out.pop() {
            removed.push((gone.id, past(&mut rng, now, 1, 20, gone.id)));
        }
    }
    removed.reverse();
    (out, removed)
}

/// Invoices (and the till orders some of them came from) spread over the history window.
fn sales(
    cfg: &KvConfig,
    count: usize,
    branches: &[Branch],
    categories: &[Category],
    products: &[Product],
    customers: &[Customer],
    now: NaiveDateTime,
) -> (Vec<Invoice>, Vec<Order>) {
    let mut rng = rng_for(cfg.seed, 4);
    let window = i64::from(cfg.history_days.max(1)) * 86_400;
    // Purchase times first, sorted, so ids rise with time as they do in a real shop.
    let mut times: Vec<i64> = (0..count)
        .map(|_| {
            let day = rng.random_range(0..window / 86_400);
            let second_of_day = rng.random_range(6 * 3_600 + 1_800..22 * 3_600);
            now.and_utc().timestamp() - window + day * 86_400 + second_of_day
        })
        .map(|t| t.min(now.and_utc().timestamp() - 60))
        .collect();
    times.sort_unstable();
    let sellable: Vec<&Product> = products
        .iter()
        .filter(|p| p.allows_sale && p.is_active && !p.is_topping)
        .collect();
    let toppings: Vec<&Product> = products.iter().filter(|p| p.is_topping).collect();
    let category_name = |p: &Product| {
        p.category_id
            .and_then(|id| categories.iter().find(|c| c.id == id))
            .map(|c| c.name.clone())
    };
    let line = |rng: &mut StdRng, p: &Product| InvoiceLine {
        product_id: p.id,
        product_code: p.code.clone(),
        product_name: p.full_name(),
        category_name: category_name(p),
        quantity: rng.random_range(1..=3) as f64,
        price: p.base_price,
        discount: if rng.random_bool(0.1) { 5_000.0 } else { 0.0 },
        note: rng
            .random_bool(0.15)
            .then(|| NOTES[rng.random_range(0..NOTES.len())].to_string()),
    };

    let mut invoices = Vec::with_capacity(count);
    let mut orders = Vec::new();
    let mut payment_id = FIRST_PAYMENT_ID;
    for (i, t) in times.into_iter().enumerate() {
        let id = FIRST_INVOICE_ID + i as i64;
        let digits = digits_for(id);
        let nanos = rng.random_range(0..1_000_000_000u32);
        let purchase = chrono::DateTime::from_timestamp(t, nanos)
            .map(|d| quantize(d.naive_utc(), digits))
            .unwrap_or(now);
        let mut lines: Vec<InvoiceLine> = Vec::new();
        if !sellable.is_empty() {
            for _ in 0..rng.random_range(1..=4) {
                let p = sellable[rng.random_range(0..sellable.len())];
                lines.push(line(&mut rng, p));
            }
            if !toppings.is_empty() && rng.random_bool(0.2) {
                let p = toppings[rng.random_range(0..toppings.len())];
                lines.push(line(&mut rng, p));
            }
        }
        let status = match rng.random_range(0..100) {
            0..88 => 1,
            88..94 => 2,
            94..98 => 3,
            _ => 5,
        };
        let branch_id = if branches.len() > 1 && rng.random_bool(0.2) {
            branches[rng.random_range(1..branches.len())].id
        } else {
            branches.first().map_or(0, |b| b.id)
        };
        let customer = (!customers.is_empty() && rng.random_bool(0.55)).then(|| {
            let c = &customers[rng.random_range(0..customers.len())];
            CustomerRef {
                id: c.id,
                code: c.code.clone(),
                name: c.name.clone(),
            }
        });
        let cashier = CASHIERS[rng.random_range(0..CASHIERS.len())];
        let mut inv = Invoice {
            id,
            uuid: uuid(&mut rng),
            code: format!("HD{:06}", i + 1),
            order_code: None,
            purchase,
            branch_id,
            sold_by: (cashier.0, cashier.1.to_string()),
            customer,
            discount: if rng.random_bool(0.08) { 10_000.0 } else { 0.0 },
            delivery_price: 0.0,
            total_payment: 0.0,
            status,
            description: rng.random_bool(0.05).then(|| "Khách đặt trước".to_string()),
            lines,
            payments: Vec::new(),
            delivery: None,
            created: purchase,
            modified: maybe_modified(&mut rng, purchase, now, 0.15, id),
        };
        if inv.total() < 0.0 {
            inv.discount = 0.0;
        }
        if status == 2 && inv.modified.is_none() {
            inv.modified = Some(quantize(purchase + Duration::minutes(5), digits).min(now));
        }
        let paid = match status {
            1 => inv.total(),
            3 if rng.random_bool(0.5) => (inv.total() / 2.0).round(),
            _ => 0.0,
        };
        if paid > 0.0 {
            let split = status == 1 && rng.random_bool(0.1);
            let parts = if split {
                let cash = (paid / 2.0).round();
                vec![cash, paid - cash]
            } else {
                vec![paid]
            };
            for amount in parts {
                let method = match rng.random_range(0..20) {
                    0..12 => "Cash",
                    12..15 => "Card",
                    _ => "Transfer",
                };
                inv.payments.push(Payment {
                    id: payment_id,
                    code: format!("TT{:06}", payment_id - FIRST_PAYMENT_ID + 1),
                    amount,
                    method: method.to_string(),
                    trans_date: purchase,
                });
                payment_id += 1;
            }
            inv.total_payment = paid;
        }
        // About one sale in eight was ordered first (phone/app order at the till).
        if rng.random_bool(0.12) {
            let order_id = FIRST_ORDER_ID + orders.len() as i64;
            let code = format!("DH{:06}", orders.len() + 1);
            let ordered_at = quantize(
                purchase - Duration::minutes(rng.random_range(5..90)),
                digits_for(order_id),
            );
            inv.order_code = Some(code.clone());
            let delivery = rng.random_bool(0.5).then(|| {
                let (location, ward) = LOCATIONS[rng.random_range(0..LOCATIONS.len())];
                Delivery {
                    receiver: inv.customer.as_ref().and_then(|c| c.name.clone()),
                    contact_number: Some(phone_for(rng.random_range(0..1_000_000))),
                    address: Some(format!("{} {}", rng.random_range(1..300), STREETS[0])),
                    location_name: Some(location.to_string()),
                    ward_name: Some(ward.to_string()),
                    delivery_code: format!("GH{:06}", orders.len() + 1),
                    expected: Some(quantize(ordered_at + Duration::minutes(60), 0)),
                    price: 15_000.0,
                    status: 3,
                    partner: None,
                }
            });
            if let Some(d) = &delivery {
                inv.delivery_price = d.price;
                inv.delivery = Some(d.clone());
                if status == 1 {
                    inv.total_payment += d.price;
                    if let Some(p) = inv.payments.last_mut() {
                        p.amount += d.price;
                    }
                }
            }
            orders.push(Order {
                id: order_id,
                code,
                purchase: ordered_at,
                branch_id,
                customer: inv.customer.clone(),
                sold_by_id: cashier.0,
                status: if status == 2 { 4 } else { 3 },
                discount: inv.discount,
                total_payment: 0.0,
                description: None,
                lines: inv
                    .lines
                    .iter()
                    .enumerate()
                    .map(|(r, l)| OrderLine {
                        uuid: uuid(&mut rng),
                        product_id: l.product_id,
                        product_code: l.product_code.clone(),
                        product_name: l.product_name.clone(),
                        price: l.price,
                        quantity: l.quantity,
                        note: l.note.clone(),
                        rank: Some(r as i64 + 1),
                    })
                    .collect(),
                delivery,
                request: None,
                created: ordered_at,
                modified: Some(quantize(purchase, digits_for(order_id))),
            });
        }
        invoices.push(inv);
    }
    (invoices, orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2026-05-20T12:00:00", "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    #[test]
    fn same_seed_same_data() {
        let cfg = KvConfig::default();
        let a = generate(&cfg, now());
        let b = generate(&cfg, now());
        assert_eq!(a.products.len(), b.products.len());
        assert_eq!(
            a.customers
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
            b.customers
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            a.invoices.iter().map(|i| i.purchase).collect::<Vec<_>>(),
            b.invoices.iter().map(|i| i.purchase).collect::<Vec<_>>()
        );
    }

    #[test]
    fn small_preset_has_the_documented_shape() {
        let d = generate(&KvConfig::default(), now());
        assert_eq!(d.categories.len(), 13);
        assert_eq!(d.products.len(), 60);
        assert_eq!(d.customers.len(), 80);
        assert_eq!(d.invoices.len(), 300);
        assert_eq!(d.removed_products.len(), 2);
        assert!(d.products.iter().any(|p| p.master_product_id.is_some()));
        assert!(d.products.iter().any(|p| p.master_unit_id.is_some()));
        assert!(d.products.iter().any(|p| !p.topping_ids.is_empty()));
        let oldest = d.invoices.iter().map(|i| i.purchase).min().unwrap();
        assert!(oldest >= now() - Duration::days(30));
        assert!(d.invoices.iter().all(|i| i.purchase < now()));
        let phones: std::collections::HashSet<_> = d
            .customers
            .iter()
            .filter_map(|c| c.contact_number.clone())
            .collect();
        assert_eq!(
            phones.len(),
            d.customers
                .iter()
                .filter(|c| c.contact_number.is_some())
                .count()
        );
    }

    #[test]
    fn exact_counts_are_exact() {
        let cfg = KvConfig {
            size: DataSize::Exact(Counts {
                categories: 3,
                products: 200,
                customers: 100,
                invoices: 250,
            }),
            ..KvConfig::default()
        };
        let d = generate(&cfg, now());
        assert_eq!(
            (
                d.categories.len(),
                d.products.len(),
                d.customers.len(),
                d.invoices.len()
            ),
            (3, 200, 100, 250)
        );
        assert!(d.removed_products.is_empty());
    }
}
