//! Customer rules, both directions: KiotViet → Abaha keyed by phone (R-CUS-1), Abaha → KiotViet
//! writes (R-CUS-2, R-CUS-3), phone normalisation for matching, and the direction-neutral
//! [`CustomerCore`] whose hash tells an echo of our own write from a real change (R-CUS-3).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::abaha::{CustomerItem, Gender};
use crate::api::AbahaCustomer;
use crate::kiotviet::{Customer, CustomerWrite};
use crate::time::{kv_local, vn_date, vn_midnight};

/// The name Abaha's own connectors give a customer without one.
pub const PLACEHOLDER_NAME: &str = "Khách";

/// Why a record was not synced; the report counts skips by [`SkipReason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// R-CUS-1: customers are keyed by phone, so one without a phone cannot be synced.
    NoPhone,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoPhone => "no_phone",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// R-CUS-1: a KiotViet customer becomes an Abaha customer keyed by its (normalised) phone.
/// No usable phone → skipped with [`SkipReason::NoPhone`]; a blank name becomes "Khách";
/// gender true/false → male/female; birth date as its Vietnam calendar date.
pub fn customer_item(c: &Customer) -> Result<CustomerItem, SkipReason> {
    let phone = c
        .contact_number
        .as_deref()
        .and_then(first_phone)
        .ok_or(SkipReason::NoPhone)?;
    Ok(CustomerItem {
        kiotviet_id: c.id,
        code: clean(c.code.as_deref()),
        phone,
        name: name_or_placeholder(c.name.as_deref()),
        email: clean(c.email.as_deref()),
        address: clean(c.address.as_deref()),
        gender: c.gender.map(Gender::from_kiotviet),
        birth_date: c.birth_date.as_ref().map(vn_date),
    })
}

/// Phone in matching form: digits only, a `+84`/`84`/`0084` country prefix becomes `0`.
/// `"+84 987-654-321"` → `"0987654321"`. Empty when there are no digits.
pub fn normalize_phone(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let had_plus = raw.trim_start().starts_with('+');
    let national = if let Some(rest) = digits.strip_prefix("0084") {
        Some(rest)
    } else if let Some(rest) = digits.strip_prefix("84") {
        // Without '+', "84…" is a country prefix only when what follows is a full subscriber
        // number (9–10 digits); a Vietnamese national number starts with 0, never 84.
        (had_plus || (9..=10).contains(&rest.len())).then_some(rest)
    } else {
        None
    };
    match national {
        Some(rest) if !rest.is_empty() && !rest.starts_with('0') => format!("0{rest}"),
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => digits,
    }
}

/// The first phone of a contact field that may list several (`"0987… / 0912…"`), normalised;
/// `None` when it holds no digits.
pub fn first_phone(raw: &str) -> Option<String> {
    raw.split(['/', ',', ';', '|', '\n'])
        .map(normalize_phone)
        .find(|p| !p.is_empty())
}

/// R-CUS-2/R-CUS-3: the KiotViet create/update body for an Abaha customer.
///
/// The caller checks the phone first (a customer without one is a 422); here a missing phone is
/// sent as empty so that this stays total. `code` is left out (KiotViet generates one on create;
/// the engine sets the known code on update). The comment is left out so an update never wipes
/// what the shop wrote in KiotViet.
pub fn customer_write(c: &AbahaCustomer, branch_id: i64) -> CustomerWrite {
    CustomerWrite {
        code: None,
        name: name_or_placeholder(c.name.as_deref()),
        gender: c.gender.map(Gender::to_kiotviet),
        birth_date: c.birth_date.map(|d| kv_local(&vn_midnight(d))),
        contact_number: c.phone.as_deref().and_then(first_phone).unwrap_or_default(),
        address: clean(c.address.as_deref()),
        email: clean(c.email.as_deref()),
        comment: None,
        branch_id: Some(branch_id),
    }
}

/// The fields both directions carry, normalised the same way, so that hashing it on either side
/// gives the same value for the same person (R-CUS-3: a push that only echoes what the pull just
/// wrote is "unchanged", and the directions never ping-pong).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCore {
    pub phone: String,
    pub name: String,
    pub email: Option<String>,
    pub address: Option<String>,
    pub gender: Option<Gender>,
    pub birth_date: Option<NaiveDate>,
}

impl From<&CustomerItem> for CustomerCore {
    fn from(c: &CustomerItem) -> Self {
        CustomerCore {
            phone: normalize_phone(&c.phone),
            name: name_or_placeholder(Some(&c.name)),
            email: clean(c.email.as_deref()).map(|e| e.to_lowercase()),
            address: clean(c.address.as_deref()),
            gender: c.gender,
            birth_date: c.birth_date,
        }
    }
}

impl From<&AbahaCustomer> for CustomerCore {
    fn from(c: &AbahaCustomer) -> Self {
        CustomerCore {
            phone: c.phone.as_deref().and_then(first_phone).unwrap_or_default(),
            name: name_or_placeholder(c.name.as_deref()),
            email: clean(c.email.as_deref()).map(|e| e.to_lowercase()),
            address: clean(c.address.as_deref()),
            gender: c.gender,
            birth_date: c.birth_date,
        }
    }
}

impl From<&Customer> for CustomerCore {
    fn from(c: &Customer) -> Self {
        CustomerCore {
            phone: c
                .contact_number
                .as_deref()
                .and_then(first_phone)
                .unwrap_or_default(),
            name: name_or_placeholder(c.name.as_deref()),
            email: clean(c.email.as_deref()).map(|e| e.to_lowercase()),
            address: clean(c.address.as_deref()),
            gender: c.gender.map(Gender::from_kiotviet),
            birth_date: c.birth_date.as_ref().map(vn_date),
        }
    }
}

fn name_or_placeholder(name: Option<&str>) -> String {
    clean(name).unwrap_or_else(|| PLACEHOLDER_NAME.to_owned())
}

fn clean(s: Option<&str>) -> Option<String> {
    let t = s?.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::content_hash;
    use serde_json::json;

    fn kv(v: serde_json::Value) -> Customer {
        serde_json::from_value(v).unwrap()
    }

    fn abaha(v: serde_json::Value) -> AbahaCustomer {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn r_cus_1_customer_is_copied_with_its_fields() {
        // GIVEN a KiotViet customer with every carried field
        let c = kv(json!({
            "id": 880001, "code": "KH000123", "name": "Nguyễn Văn A", "gender": true,
            "birthDate": "1995-06-01T00:00:00.0000000", "contactNumber": "0987 654 321",
            "address": "1 Lê Lợi, Q1", "email": "a@example.com"
        }));
        // WHEN mapped
        let item = customer_item(&c).unwrap();
        // THEN phone (normalised), name, email, address, gender, birth date and code are carried
        assert_eq!(
            item,
            CustomerItem {
                kiotviet_id: 880001,
                code: Some("KH000123".into()),
                phone: "0987654321".into(),
                name: "Nguyễn Văn A".into(),
                email: Some("a@example.com".into()),
                address: Some("1 Lê Lợi, Q1".into()),
                gender: Some(Gender::Male),
                birth_date: NaiveDate::from_ymd_opt(1995, 6, 1),
            }
        );
    }

    #[test]
    fn r_cus_1_customer_without_phone_is_skipped_as_no_phone() {
        // GIVEN customers with no phone, a blank one, and one without digits
        for v in [
            json!({"id": 1}),
            json!({"id": 1, "contactNumber": "  "}),
            json!({"id": 1, "contactNumber": "n/a"}),
        ] {
            // WHEN mapped THEN skipped with reason no_phone
            assert_eq!(customer_item(&kv(v)), Err(SkipReason::NoPhone));
        }
        assert_eq!(SkipReason::NoPhone.as_str(), "no_phone");
    }

    #[test]
    fn r_cus_1_missing_or_blank_name_becomes_khach() {
        for v in [
            json!({"id": 1, "contactNumber": "0987654321"}),
            json!({"id": 1, "contactNumber": "0987654321", "name": "   "}),
        ] {
            assert_eq!(customer_item(&kv(v)).unwrap().name, "Khách");
        }
    }

    #[test]
    fn r_cus_1_gender_false_is_female_and_absent_is_null() {
        let f = customer_item(&kv(
            json!({"id": 1, "contactNumber": "0987654321", "gender": false}),
        ))
        .unwrap();
        assert_eq!(f.gender, Some(Gender::Female));
        let n = customer_item(&kv(json!({"id": 1, "contactNumber": "0987654321"}))).unwrap();
        assert_eq!(n.gender, None);
    }

    #[test]
    fn r_cus_1_birth_date_is_the_vietnam_calendar_date() {
        // GIVEN a birth date sent with an offset that is the previous day in UTC
        let c = kv(
            json!({"id": 1, "contactNumber": "0987654321", "birthDate": "1995-06-01T00:30:00+07:00"}),
        );
        // THEN the Vietnam date is kept
        assert_eq!(
            customer_item(&c).unwrap().birth_date,
            NaiveDate::from_ymd_opt(1995, 6, 1)
        );
    }

    #[test]
    fn r_cus_1_phones_are_normalised_for_matching() {
        let table = [
            ("0987654321", "0987654321"),
            ("0987 654 321", "0987654321"),
            ("0987.654.321", "0987654321"),
            ("+84987654321", "0987654321"),
            ("+84 987 654 321", "0987654321"),
            ("84987654321", "0987654321"),
            ("0084987654321", "0987654321"),
            ("+84 0987654321", "0987654321"),
            ("842838221234", "02838221234"),
            ("028 3822 1234", "02838221234"),
            ("8412345", "8412345"),
            ("abc", ""),
        ];
        for (raw, want) in table {
            assert_eq!(normalize_phone(raw), want, "{raw}");
        }
        assert_eq!(
            first_phone("0987654321 / 0912345678").as_deref(),
            Some("0987654321")
        );
        assert_eq!(first_phone(" / 0912345678").as_deref(), Some("0912345678"));
    }

    #[test]
    fn r_cus_3_abaha_customer_becomes_a_kiotviet_write_body() {
        // GIVEN an Abaha sign-up
        let c = abaha(json!({
            "id": "U-77", "name": "Nguyễn Văn A", "phone": "+84987654321", "email": "a@example.com",
            "address": null, "gender": "female", "birth_date": "1995-06-01"
        }));
        // WHEN turned into the KiotViet body for branch 233443
        let w = customer_write(&c, 233443);
        // THEN it carries name, normalised phone, gender as bool, local birth datetime, branch
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(
            v,
            json!({
                "name": "Nguyễn Văn A", "gender": false, "birthDate": "1995-06-01T00:00:00",
                "contactNumber": "0987654321", "email": "a@example.com", "branchId": 233443
            })
        );
    }

    #[test]
    fn r_cus_3_nameless_abaha_customer_is_written_as_khach() {
        let w = customer_write(&abaha(json!({"id": "U", "phone": "0987654321"})), 1);
        assert_eq!(w.name, "Khách");
        assert_eq!(w.gender, None);
        assert_eq!(w.birth_date, None);
    }

    #[test]
    fn r_cus_3_an_echo_of_the_pull_hashes_the_same() {
        // GIVEN the item the pull wrote to Abaha
        let pulled = customer_item(&kv(json!({
            "id": 1, "code": "KH1", "name": "Nguyễn Văn A", "gender": true, "birthDate": "1995-06-01T00:00:00",
            "contactNumber": "0987654321", "email": "A@Example.com"
        })))
        .unwrap();
        // WHEN Abaha's customer webhook sends the same person back (other phone spelling)
        let echoed = abaha(json!({
            "id": "U-1", "name": "Nguyễn Văn A ", "phone": "+84 987 654 321", "email": "a@example.com",
            "gender": "male", "birth_date": "1995-06-01"
        }));
        // THEN both cores hash alike, so the push reports "unchanged"
        assert_eq!(
            content_hash(&CustomerCore::from(&pulled)),
            content_hash(&CustomerCore::from(&echoed))
        );
        // AND a real change hashes differently
        let changed = abaha(json!({"id": "U-1", "name": "Nguyễn Văn B", "phone": "0987654321"}));
        assert_ne!(
            content_hash(&CustomerCore::from(&pulled)),
            content_hash(&CustomerCore::from(&changed))
        );
    }
}
