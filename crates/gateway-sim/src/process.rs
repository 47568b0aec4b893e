//! One REQUEST line in, one RESPONSE line (and one journal entry) out: the real-time API's
//! rules as the simulator applies them. Pure apart from the in-memory book and vault.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::book::Book;
use crate::clock::unix_millis;
use crate::command::Command;
use crate::journal::JournalEntry;
use crate::money::Cents;
use crate::refusal::{self, Refusal};
use crate::source::{card_source, check_source};
use crate::vault::{SourceKind, Vault};

/// Read access to a request line's fields. Empty values count as absent, as in the API.
pub(crate) trait Fields {
    /// The first value of `key`, if present.
    fn raw(&self, key: &str) -> Option<&str>;

    /// The value of `key` when present and not empty.
    fn field(&self, key: &str) -> Option<&str> {
        self.raw(key).filter(|v| !v.is_empty())
    }
}

impl Fields for kvp_format::Record {
    fn raw(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

impl Fields for [(&str, &str)] {
    fn raw(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// An account's merchant keys, by value, each with its opaque id. Debug shows only the count.
pub(crate) struct Merchants {
    ids: HashMap<String, String>,
}

impl std::fmt::Debug for Merchants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Merchants({} keys)", self.ids.len())
    }
}

impl Merchants {
    pub(crate) fn new<'a>(keys: impl IntoIterator<Item = &'a str>, vault: &Vault) -> Merchants {
        Merchants {
            ids: keys
                .into_iter()
                .map(|k| (k.to_owned(), vault.merchant_id(k)))
                .collect(),
        }
    }

    fn id_of(&self, key: &str) -> Option<&str> {
        self.ids.get(key).map(String::as_str)
    }
}

/// Where a line sits and what it may use.
#[derive(Debug)]
pub(crate) struct LineCtx<'a> {
    pub account: &'a str,
    pub sequence: u32,
    pub index: u64,
    pub now: SystemTime,
    pub merchants: &'a Merchants,
    /// The `xRefNum` this line gets, whatever its result.
    pub ref_num: String,
}

/// A processed line: the response fields (without `xIndex`/`xSequenceNumber`) and its journal
/// entry.
#[derive(Debug)]
pub(crate) struct Answer {
    pub fields: Vec<(&'static str, String)>,
    pub entry: JournalEntry,
}

#[derive(Debug, Default)]
struct Draft {
    command: String,
    merchant: Option<String>,
    target: Option<String>,
    amount: Option<u64>,
    token: Option<String>,
    masked: Option<String>,
    masked_key: &'static str,
    brand: Option<String>,
    fingerprint: Option<String>,
    auth_code: bool,
    extra: Vec<(&'static str, String)>,
}

/// Processes one line and records its effect in `book` (and new tokens in `vault`).
pub(crate) fn process_line(
    ctx: &LineCtx<'_>,
    req: &(impl Fields + ?Sized),
    book: &mut Book,
    vault: &mut Vault,
) -> Answer {
    let mut d = Draft {
        command: req.raw("xCommand").unwrap_or("").to_ascii_lowercase(),
        masked_key: "xMaskedCardNumber",
        ..Draft::default()
    };
    let verdict = decide(ctx, req, book, vault, &mut d);
    let (result, status, error, code) = match verdict {
        Ok(()) => ("A", "Approved", String::new(), "00000"),
        Err(r) => (r.result(), r.status(), r.message().into_owned(), r.code()),
    };
    let approved = verdict.is_ok();
    let mut fields: Vec<(&'static str, String)> = Vec::with_capacity(18);
    fields.extend([
        ("xResult", result.into()),
        ("xStatus", status.into()),
        ("xError", error),
        ("xErrorCode", code.into()),
        ("xRefNum", ctx.ref_num.clone()),
    ]);
    if approved {
        if d.auth_code {
            fields.push((
                "xAuthCode",
                vault
                    .keyed_hash(&["auth", &ctx.ref_num], 6)
                    .to_ascii_uppercase(),
            ));
        }
        if let Some(a) = d.amount {
            fields.push(("xAuthAmount", Cents(a).to_string()));
        }
        if let Some(t) = &d.token {
            fields.push(("xToken", t.clone()));
        }
    }
    if let Some(m) = &d.masked {
        fields.push((d.masked_key, m.clone()));
    }
    if let Some(b) = &d.brand {
        fields.push(("xCardType", b.clone()));
    }
    if approved {
        fields.append(&mut d.extra);
    }
    if let Some(inv) = req.raw("xInvoice") {
        fields.push(("xInvoice", inv.to_owned()));
    }
    fields.push(("xBatch", ctx.sequence.to_string()));
    let entry = JournalEntry {
        account: ctx.account.to_owned(),
        sequence: ctx.sequence,
        index: ctx.index,
        invoice: req.field("xInvoice").map(str::to_owned),
        command: d.command,
        result: result.to_owned(),
        error_code: code.to_owned(),
        ref_num: ctx.ref_num.clone(),
        target_ref_num: d.target,
        amount_cents: if approved { d.amount } else { None },
        token: if approved { d.token } else { None },
        masked: d.masked,
        merchant: d.merchant,
        fingerprint: if approved { d.fingerprint } else { None },
        at_unix_ms: unix_millis(ctx.now),
    };
    book.apply(&entry);
    Answer { fields, entry }
}

fn decide(
    ctx: &LineCtx<'_>,
    req: &(impl Fields + ?Sized),
    book: &Book,
    vault: &mut Vault,
    d: &mut Draft,
) -> Result<(), Refusal> {
    let key = req.field("xKey").ok_or(Refusal::Missing("xKey"))?;
    let merchant = ctx
        .merchants
        .id_of(key)
        .ok_or(Refusal::InvalidKey)?
        .to_owned();
    d.merchant = Some(merchant.clone());
    for f in ["xVersion", "xSoftwareName", "xSoftwareVersion"] {
        req.field(f).ok_or(Refusal::Missing(f))?;
    }
    let raw = req.field("xCommand").ok_or(Refusal::Missing("xCommand"))?;
    let command = Command::parse(raw).ok_or(Refusal::UnsupportedCommand)?;
    d.command = command.name().to_owned();
    match command {
        Command::Sale | Command::AuthOnly | Command::Credit | Command::Save => {
            let src = card_source(req, ctx.now, vault)?;
            d.masked = Some(src.masked.clone());
            d.brand = Some(src.brand.clone());
            let amount = if command == Command::Save {
                None
            } else {
                Some(amount(req)?)
            };
            d.amount = amount;
            if let Some(a) = amount {
                let fp = fingerprint(vault, &merchant, command, a, &src.hash, req);
                if command != Command::Credit
                    && !allow_duplicate(req)
                    && book.is_duplicate(&fp, unix_millis(ctx.now))
                {
                    return Err(Refusal::Duplicate);
                }
                d.fingerprint = Some(fp);
            }
            if let Some(r) = src.number.as_deref().and_then(refusal::for_card) {
                return Err(r);
            }
            if let Some(r) = amount
                .filter(|_| command != Command::Credit)
                .and_then(refusal::for_amount)
            {
                return Err(r);
            }
            d.token = Some(vault.tokenize(
                src.hash,
                SourceKind::Card,
                src.masked,
                &src.brand,
                src.exp.as_deref(),
            ));
            d.auth_code = command != Command::Save;
            if matches!(command, Command::Sale | Command::AuthOnly) {
                if req.field("xZip").is_some() || req.field("xStreet").is_some() {
                    d.extra.push(("xAvsResultCode", "YYY".into()));
                    d.extra
                        .push(("xAvsResult", "Address: Match & 5 Digit Zip: Match".into()));
                }
                if req.field("xCVV").is_some() {
                    d.extra.push(("xCvvResultCode", "M".into()));
                    d.extra.push(("xCvvResult", "Match".into()));
                }
            }
            Ok(())
        }
        Command::CheckSale => {
            d.masked_key = "xMaskedAccountNumber";
            let src = check_source(req, vault)?;
            d.masked = Some(src.masked.clone());
            let a = amount(req)?;
            d.amount = Some(a);
            let fp = fingerprint(vault, &merchant, command, a, &src.hash, req);
            if !allow_duplicate(req) && book.is_duplicate(&fp, unix_millis(ctx.now)) {
                return Err(Refusal::Duplicate);
            }
            d.fingerprint = Some(fp);
            if src.number.as_deref() == Some(refusal::NSF_ACCOUNT) {
                return Err(Refusal::InsufficientFunds);
            }
            if let Some(r) = refusal::for_amount(a) {
                return Err(r);
            }
            d.token = Some(vault.tokenize(src.hash, SourceKind::Check, src.masked, "Check", None));
            Ok(())
        }
        Command::Capture | Command::Refund | Command::Void => {
            let target = req.field("xRefNum").ok_or(Refusal::Missing("xRefNum"))?;
            d.target = Some(target.to_owned());
            let t = book
                .get(target, &merchant)
                .ok_or(Refusal::OriginalNotFound)?;
            if t.voided {
                return Err(Refusal::AlreadyVoided);
            }
            let requested = match req.field("xAmount") {
                Some(s) => Some(Cents::parse(s).ok_or(Refusal::Invalid("xAmount"))?.0),
                None => None,
            };
            match command {
                Command::Capture => {
                    if t.command != Command::AuthOnly || t.captured > 0 {
                        return Err(Refusal::NotCapturable);
                    }
                    let a = requested.unwrap_or(t.amount);
                    if a > t.amount {
                        return Err(Refusal::ExceedsAuthorized);
                    }
                    d.amount = Some(a);
                }
                Command::Refund => {
                    let root = book
                        .refund_root(target, &merchant)
                        .ok_or(Refusal::OriginalNotFound)?;
                    let refundable = matches!(root.command, Command::Sale | Command::AuthOnly)
                        && root.captured > 0;
                    if !refundable {
                        return Err(Refusal::NotRefundable);
                    }
                    if root.voided {
                        return Err(Refusal::AlreadyVoided);
                    }
                    let left = root.captured.saturating_sub(root.refunded);
                    let a = requested.unwrap_or(left);
                    if a == 0 || a > left {
                        return Err(Refusal::ExceedsCaptured);
                    }
                    d.amount = Some(a);
                }
                _ => {
                    let voidable = matches!(
                        t.command,
                        Command::Sale
                            | Command::AuthOnly
                            | Command::Credit
                            | Command::Capture
                            | Command::Refund
                    ) && t.refunded == 0;
                    if !voidable {
                        return Err(Refusal::NotVoidable);
                    }
                    d.amount = Some(t.amount);
                }
            }
            Ok(())
        }
    }
}

fn amount(req: &(impl Fields + ?Sized)) -> Result<u64, Refusal> {
    let s = req.field("xAmount").ok_or(Refusal::Missing("xAmount"))?;
    Cents::parse(s)
        .map(|c| c.0)
        .ok_or(Refusal::Invalid("xAmount"))
}

fn allow_duplicate(req: &(impl Fields + ?Sized)) -> bool {
    req.field("xAllowDuplicate")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The duplicate-check identity of a money transaction: merchant, command, amount, payment
/// source and invoice (an invoice sharpens the check: different invoices are not duplicates).
fn fingerprint(
    vault: &Vault,
    merchant: &str,
    command: Command,
    cents: u64,
    source_hash: &str,
    req: &(impl Fields + ?Sized),
) -> String {
    let invoice = req.field("xInvoice").unwrap_or("");
    vault.keyed_hash(
        &[
            "dup",
            merchant,
            command.name(),
            &cents.to_string(),
            source_hash,
            invoice,
        ],
        32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const KEY: &str = "mk-1";
    // 2026-11-22 00:00:00 UTC
    const NOW: u64 = 1_795_305_600;

    struct T {
        _dir: tempfile::TempDir,
        vault: Vault,
        book: Book,
        merchants: Merchants,
        now: SystemTime,
        n: u64,
    }

    impl T {
        fn new() -> T {
            let dir = tempfile::tempdir().unwrap();
            let vault = Vault::open(dir.path()).unwrap();
            let merchants = Merchants::new([KEY, "mk-2"], &vault);
            T {
                _dir: dir,
                vault,
                book: Book::default(),
                merchants,
                now: UNIX_EPOCH + Duration::from_secs(NOW),
                n: 0,
            }
        }

        /// Runs a line with the common fields (key, version, software) added.
        fn run(&mut self, extra: &[(&str, &str)]) -> Answer {
            let mut pairs: Vec<(&str, &str)> = vec![
                ("xVersion", "5.0.0"),
                ("xSoftwareName", "t"),
                ("xSoftwareVersion", "1"),
            ];
            if !extra.iter().any(|(k, _)| *k == "xKey") {
                pairs.push(("xKey", KEY));
            }
            pairs.extend_from_slice(extra);
            self.raw(&pairs)
        }

        fn raw(&mut self, pairs: &[(&str, &str)]) -> Answer {
            self.n += 1;
            let ctx = LineCtx {
                account: "acme",
                sequence: 1,
                index: self.n,
                now: self.now,
                merchants: &self.merchants,
                ref_num: format!("{}", 1000 + self.n),
            };
            process_line(&ctx, pairs, &mut self.book, &mut self.vault)
        }

        /// `(xResult, xErrorCode)` of a line.
        fn code(&mut self, extra: &[(&str, &str)]) -> (String, String) {
            let a = self.run(extra);
            (get(&a, "xResult"), get(&a, "xErrorCode"))
        }

        fn approved_ref(&mut self, extra: &[(&str, &str)]) -> String {
            let a = self.run(extra);
            assert_eq!(get(&a, "xResult"), "A", "{:?}", a.fields);
            get(&a, "xRefNum")
        }
    }

    fn get(a: &Answer, k: &str) -> String {
        a.fields
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    const VISA: &str = "4111111111111111";

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn sale(amount: &str) -> Vec<(&'static str, String)> {
        vec![
            ("xCommand", "cc:sale".into()),
            ("xCardNum", VISA.into()),
            ("xExp", "1230".into()),
            ("xAmount", amount.into()),
        ]
    }

    fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, s)| (*k, s.as_str())).collect()
    }

    #[test]
    fn request_rules_table() {
        #[rustfmt::skip]
        let cases: &[(Pairs, &str, &str)] = &[
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "1.00")], "A", "00000"),
            (&[("xCommand", "CC:Sale"), ("xCardNum", VISA), ("xExp", "1126"), ("xAmount", "1.01")], "A", "00000"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1026"), ("xAmount", "1.02")], "E", "00006"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1330"), ("xAmount", "1.03")], "E", "00002"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xAmount", "1.04")], "E", "00001"),
            (&[("xCommand", "cc:sale"), ("xCardNum", "4111111111111112"), ("xExp", "1230"), ("xAmount", "1")], "E", "00005"),
            (&[("xCommand", "cc:sale"), ("xExp", "1230"), ("xAmount", "1")], "E", "00001"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xToken", "abc"), ("xAmount", "1")], "E", "00007"),
            (&[("xCommand", "cc:sale"), ("xToken", "not-issued"), ("xAmount", "1")], "E", "00008"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230")], "E", "00001"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "0")], "E", "00002"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "1.005")], "E", "00002"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "-5")], "E", "00002"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "1"), ("xKey", "nope")], "E", "00003"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "1"), ("xKey", "")], "E", "00001"),
            (&[("xCommand", "cc:adjust"), ("xRefNum", "1")], "E", "00004"),
            (&[("xCommand", "")], "E", "00001"),
            (&[("xCommand", "cc:sale"), ("xCardNum", "4000000000000002"), ("xExp", "1230"), ("xAmount", "1")], "D", "01000"),
            (&[("xCommand", "cc:sale"), ("xCardNum", "4000000000009995"), ("xExp", "1230"), ("xAmount", "1")], "D", "01001"),
            (&[("xCommand", "cc:authonly"), ("xCardNum", "4000000000009987"), ("xExp", "1230"), ("xAmount", "1")], "D", "01002"),
            (&[("xCommand", "cc:sale"), ("xCardNum", "4000000000000119"), ("xExp", "1230"), ("xAmount", "1")], "E", "02000"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "13.13")], "D", "01000"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "14.14")], "D", "01001"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "15.15")], "E", "02000"),
            (&[("xCommand", "cc:sale"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "50000.01")], "D", "01003"),
            (&[("xCommand", "cc:credit"), ("xCardNum", VISA), ("xExp", "1230"), ("xAmount", "13.13")], "A", "00000"),
            (&[("xCommand", "cc:credit"), ("xCardNum", "4000000000000002"), ("xExp", "1230"), ("xAmount", "2")], "D", "01000"),
            (&[("xCommand", "cc:save"), ("xCardNum", "5555555555554444"), ("xExp", "1230")], "A", "00000"),
            (&[("xCommand", "cc:save"), ("xCardNum", "4000000000000002"), ("xExp", "1230")], "D", "01000"),
            (&[("xCommand", "cc:sale"), ("xMagstripe", "%B4111111111111111^SMITH/JO^3012101?"), ("xAmount", "3.01")], "A", "00000"),
            (&[("xCommand", "cc:sale"), ("xMagstripe", ";4111111111111111=30121010000?"), ("xAmount", "3.02")], "A", "00000"),
            (&[("xCommand", "cc:sale"), ("xMagstripe", ";4111111111111111=24121010000?"), ("xAmount", "3.03")], "E", "00006"),
            (&[("xCommand", "cc:sale"), ("xMagstripe", "garbage"), ("xAmount", "3.04")], "E", "00002"),
            (&[("xCommand", "check:sale"), ("xRouting", "021000021"), ("xAccount", "123456789"), ("xAmount", "5")], "A", "00000"),
            (&[("xCommand", "check:sale"), ("xRouting", "021000022"), ("xAccount", "123456789"), ("xAmount", "5")], "E", "00002"),
            (&[("xCommand", "check:sale"), ("xRouting", "021000021"), ("xAccount", "12"), ("xAmount", "5")], "E", "00002"),
            (&[("xCommand", "check:sale"), ("xAccount", "123456789"), ("xAmount", "5")], "E", "00001"),
            (&[("xCommand", "check:sale"), ("xRouting", "021000021"), ("xAccount", "9999999999"), ("xAmount", "5")], "D", "01001"),
            (&[("xCommand", "check:sale"), ("xRouting", "021000021"), ("xAccount", "123456789"), ("xAmount", "13.13")], "D", "01000"),
            (&[("xCommand", "cc:capture")], "E", "00001"),
            (&[("xCommand", "cc:refund"), ("xRefNum", "999")], "E", "00009"),
            (&[("xCommand", "cc:void"), ("xRefNum", "999")], "E", "00009"),
        ];
        let mut t = T::new();
        for (extra, result, code) in cases {
            let got = t.code(extra);
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                (*result, *code),
                "{extra:?}"
            );
        }
        let mut t = T::new();
        let missing_version: &[(&str, &str)] = &[("xKey", KEY), ("xCommand", "cc:save")];
        let a = t.raw(missing_version);
        assert_eq!(get(&a, "xError"), "Required: xVersion");
    }

    #[test]
    fn approved_sale_fields() {
        let mut t = T::new();
        let mut line = sale("10.5");
        line.push(("xInvoice", "INV 1".into()));
        line.push(("xCVV", "123".into()));
        line.push(("xZip", "10001".into()));
        let a = t.run(&refs(&line));
        assert_eq!(get(&a, "xStatus"), "Approved");
        assert_eq!(get(&a, "xError"), "");
        assert_eq!(get(&a, "xRefNum"), "1001");
        assert_eq!(get(&a, "xAuthAmount"), "10.50");
        assert_eq!(get(&a, "xMaskedCardNumber"), "4xxxxxxxxxxx1111");
        assert_eq!(get(&a, "xCardType"), "Visa");
        assert_eq!(get(&a, "xInvoice"), "INV 1");
        assert_eq!(get(&a, "xCvvResultCode"), "M");
        assert_eq!(get(&a, "xAvsResultCode"), "YYY");
        assert_eq!(get(&a, "xAuthCode").len(), 6);
        let token = get(&a, "xToken");
        assert_eq!(token.len(), 32);
        assert_eq!(a.entry.masked.as_deref(), Some("4xxxxxxxxxxx1111"));
        assert_eq!(a.entry.amount_cents, Some(1050));
        // Same card, another amount: same token. The token works as a payment source.
        let b = t.run(&refs(&sale("11")));
        assert_eq!(get(&b, "xToken"), token);
        let c = t.run(&[
            ("xCommand", "cc:sale"),
            ("xToken", &token),
            ("xAmount", "12"),
        ]);
        assert_eq!(get(&c, "xResult"), "A");
        assert_eq!(get(&c, "xMaskedCardNumber"), "4xxxxxxxxxxx1111");
        // A declined line still gets a unique xRefNum and its masked card, but no token.
        let d = t.run(&refs(&sale("13.13")));
        assert_eq!(
            (get(&d, "xStatus"), get(&d, "xToken")),
            ("Declined".into(), String::new())
        );
        assert_eq!(get(&d, "xRefNum"), "1004");
    }

    #[test]
    fn duplicate_rule() {
        let mut t = T::new();
        let base = sale("20");
        assert_eq!(t.code(&refs(&base)).0, "A");
        assert_eq!(t.code(&refs(&base)), ("D".into(), "01004".into()));
        // The token of the same card is the same payment source.
        let token = get(&t.run(&refs(&sale("21"))), "xToken");
        let by_token = [
            ("xCommand", "cc:sale"),
            ("xToken", token.as_str()),
            ("xAmount", "20"),
        ];
        assert_eq!(t.code(&by_token).1, "01004");
        // Override, another invoice, another amount, another merchant: not duplicates.
        let mut allow = base.clone();
        allow.push(("xAllowDuplicate", "True".into()));
        assert_eq!(t.code(&refs(&allow)).0, "A");
        let mut inv = base.clone();
        inv.push(("xInvoice", "A-1".into()));
        assert_eq!(t.code(&refs(&inv)).0, "A");
        assert_eq!(t.code(&refs(&inv)).1, "01004");
        let mut other = base.clone();
        other.push(("xKey", "mk-2".into()));
        assert_eq!(t.code(&refs(&other)).0, "A");
        // 9:59 later still a duplicate, 10:00 later not.
        t.now += Duration::from_secs(599);
        assert_eq!(t.code(&refs(&base)).1, "01004");
        t.now += Duration::from_secs(1);
        assert_eq!(t.code(&refs(&base)).0, "A");
        // A declined attempt does not open a window.
        assert_eq!(t.code(&refs(&sale("13.13"))).0, "D");
        assert_eq!(t.code(&refs(&sale("13.13"))).0, "D");
        assert_eq!(t.code(&refs(&sale("13.13"))).1, "01000");
    }

    #[test]
    fn capture_refund_void_rules() {
        let mut t = T::new();
        let auth = t.approved_ref(&[
            ("xCommand", "cc:authonly"),
            ("xCardNum", VISA),
            ("xExp", "1230"),
            ("xAmount", "100"),
        ]);
        let sale_ref = t.approved_ref(&refs(&sale("40")));
        #[rustfmt::skip]
        let steps: &[(&str, Pairs, &str, &str)] = &[
            ("refund uncaptured auth", &[("xCommand", "cc:refund"), ("xRefNum", "AUTH")], "E", "00014"),
            ("capture a sale", &[("xCommand", "cc:capture"), ("xRefNum", "SALE")], "E", "00011"),
            ("capture too much", &[("xCommand", "cc:capture"), ("xRefNum", "AUTH"), ("xAmount", "100.01")], "E", "00012"),
            ("capture other merchant", &[("xCommand", "cc:capture"), ("xRefNum", "AUTH"), ("xKey", "mk-2")], "E", "00009"),
            ("capture part", &[("xCommand", "cc:capture"), ("xRefNum", "AUTH"), ("xAmount", "80")], "A", "00000"),
            ("capture twice", &[("xCommand", "cc:capture"), ("xRefNum", "AUTH")], "E", "00011"),
            ("refund above captured", &[("xCommand", "cc:refund"), ("xRefNum", "AUTH"), ("xAmount", "80.01")], "E", "00013"),
            ("refund part", &[("xCommand", "cc:refund"), ("xRefNum", "AUTH"), ("xAmount", "50")], "A", "00000"),
            ("refund rest too much", &[("xCommand", "cc:refund"), ("xRefNum", "AUTH"), ("xAmount", "30.01")], "E", "00013"),
            ("refund rest", &[("xCommand", "cc:refund"), ("xRefNum", "AUTH")], "A", "00000"),
            ("nothing left", &[("xCommand", "cc:refund"), ("xRefNum", "AUTH"), ("xAmount", "0.01")], "E", "00013"),
            ("void auth with refunds", &[("xCommand", "cc:void"), ("xRefNum", "AUTH")], "E", "00015"),
            ("void sale", &[("xCommand", "cc:void"), ("xRefNum", "SALE")], "A", "00000"),
            ("void sale again", &[("xCommand", "cc:void"), ("xRefNum", "SALE")], "E", "00010"),
            ("refund voided sale", &[("xCommand", "cc:refund"), ("xRefNum", "SALE")], "E", "00010"),
            ("bad refund amount", &[("xCommand", "cc:refund"), ("xRefNum", "AUTH"), ("xAmount", "x")], "E", "00002"),
        ];
        for (what, line, result, code) in steps {
            let line: Vec<(&str, &str)> = line
                .iter()
                .map(|&(k, v)| {
                    (
                        k,
                        match v {
                            "AUTH" => auth.as_str(),
                            "SALE" => sale_ref.as_str(),
                            v => v,
                        },
                    )
                })
                .collect();
            let got = t.code(&line);
            assert_eq!((got.0.as_str(), got.1.as_str()), (*result, *code), "{what}");
        }
        // Voiding a refund gives the money back to refund.
        let sale2 = t.approved_ref(&refs(&sale("60")));
        let refund = t.approved_ref(&[
            ("xCommand", "cc:refund"),
            ("xRefNum", &sale2),
            ("xAmount", "60"),
        ]);
        assert_eq!(
            t.code(&[
                ("xCommand", "cc:refund"),
                ("xRefNum", &sale2),
                ("xAmount", "1")
            ])
            .1,
            "00013"
        );
        t.approved_ref(&[("xCommand", "cc:void"), ("xRefNum", &refund)]);
        t.approved_ref(&[
            ("xCommand", "cc:refund"),
            ("xRefNum", &sale2),
            ("xAmount", "60"),
        ]);
        // A check sale is not refundable with cc:refund.
        let chk = t.approved_ref(&[
            ("xCommand", "check:sale"),
            ("xRouting", "021000021"),
            ("xAccount", "123456789"),
            ("xAmount", "5"),
        ]);
        assert_eq!(
            t.code(&[("xCommand", "cc:refund"), ("xRefNum", &chk)]).1,
            "00014"
        );
    }

    #[test]
    fn journal_entries_hold_no_card_data_or_keys() {
        let mut t = T::new();
        let lines: Vec<Vec<(&str, &str)>> = vec![
            vec![
                ("xCommand", "cc:sale"),
                ("xCardNum", VISA),
                ("xExp", "1230"),
                ("xAmount", "1"),
                ("xCVV", "987"),
            ],
            vec![
                ("xCommand", "cc:sale"),
                ("xCardNum", "4000000000000002"),
                ("xExp", "1230"),
                ("xAmount", "1"),
            ],
            vec![
                ("xCommand", "check:sale"),
                ("xRouting", "021000021"),
                ("xAccount", "123456789"),
                ("xAmount", "5"),
            ],
            vec![
                ("xCommand", "cc:sale"),
                ("xMagstripe", ";4111111111111111=30121010000?"),
                ("xAmount", "2"),
            ],
            vec![
                ("xCommand", "cc:sale"),
                ("xCardNum", VISA),
                ("xExp", "1230"),
                ("xAmount", "1"),
                ("xKey", "wrong-key"),
            ],
        ];
        let mut all = String::new();
        for l in &lines {
            let a = t.run(l);
            // Random hex (tokens, salted hashes) could contain a short digit run by chance.
            let mut e = a.entry.clone();
            (e.token, e.fingerprint, e.merchant) = (None, None, None);
            all.push_str(&serde_json::to_string(&e).unwrap());
            for (k, v) in &a.fields {
                assert!(!kvp_format::is_sensitive(k), "{k} answered");
                if !matches!(*k, "xToken" | "xAuthCode") {
                    all.push_str(v);
                }
            }
        }
        for secret in [
            VISA,
            "4000000000000002",
            "987",
            "123456789",
            "021000021",
            KEY,
            "wrong-key",
        ] {
            // Whole digit runs only: "987" occurs by chance inside timestamps and refnums.
            assert!(
                !kvp_format::contains_secret(&all, secret),
                "{secret} leaked: {all}"
            );
        }
    }
}
