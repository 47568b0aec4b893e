//! One REQUEST line in, one RESPONSE line and one journal line out: the real-time API's rules
//! as the simulator applies them. Pure apart from the in-memory book and vault.
//!
//! [`process_line`] decides and records the effect in the book; [`write_answer`] then writes
//! the RESPONSE line and the journal line straight into the batch's buffers. What is decided
//! is held in an [`Outcome`] that borrows from the request and the account (merchant ids,
//! vault positions), so an ordinary line allocates nothing.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::book::{Book, BookEntry, ref_key};
use crate::card;
use crate::command::Command;
use crate::fields::{Fields, Key};
use crate::knobs::SpaceEncoding;
use crate::money::Cents;
use crate::out::{self, Decimal, JsonObject};
use crate::refusal::{self, Refusal};
use crate::source::{CardSource, CheckSource, Shown, card_source, check_source};
use crate::vault::{Digest32, SourceKind, Vault};

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
    /// The batch's `X`, in decimal.
    pub sequence_text: &'a str,
    pub index: u64,
    pub now: SystemTime,
    /// `now` in Unix milliseconds.
    pub now_ms: u64,
    /// `now_ms` in decimal.
    pub now_ms_text: &'a str,
    pub merchants: &'a Merchants,
    /// The `xRefNum` this line gets, whatever its result.
    pub ref_num: u64,
    /// How spaces are written in the RESPONSE line.
    pub spaces: SpaceEncoding,
}

/// What the rules decided for one line: everything its RESPONSE and journal lines say beyond
/// the line's own fields.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    pub verdict: Result<(), Refusal>,
    command: Option<Command>,
    merchant: Option<&'a str>,
    /// The `xRefNum` the line referred to, as given.
    target: Option<&'a str>,
    amount: Option<u64>,
    /// Vault position of the token answered.
    token: Option<usize>,
    shown: Option<Shown<'a>>,
    /// Whether `xCardType` is answered (from `shown`).
    brand: bool,
    masked_key: &'static str,
    fingerprint: Option<u128>,
    auth_code: bool,
    avs: bool,
    cvv: bool,
}

impl Outcome<'_> {
    /// `A`, `D` or `E`.
    pub(crate) fn result(&self) -> &'static str {
        match self.verdict {
            Ok(()) => "A",
            Err(r) => r.result(),
        }
    }
}

/// Decides one line and records its effect in `book` (and new tokens in `vault`).
pub(crate) fn process_line<'a, F: Fields + ?Sized>(
    ctx: &LineCtx<'a>,
    req: &'a F,
    book: &mut Book,
    vault: &mut Vault,
) -> Outcome<'a> {
    let mut o = Outcome {
        verdict: Ok(()),
        command: None,
        merchant: None,
        target: None,
        amount: None,
        token: None,
        shown: None,
        brand: false,
        masked_key: "xMaskedCardNumber",
        fingerprint: None,
        auth_code: false,
        avs: false,
        cvv: false,
    };
    o.verdict = decide(ctx, req, book, vault, &mut o);
    let approved = o.verdict.is_ok();
    book.record(&BookEntry {
        approved,
        command: o.command,
        ref_num: Some(ctx.ref_num),
        target: o.target.and_then(ref_key),
        amount_cents: o.amount.filter(|_| approved),
        merchant: o.merchant.unwrap_or_default(),
        fingerprint: o.fingerprint.filter(|_| approved),
        at_unix_ms: ctx.now_ms,
    });
    o
}

/// Appends the line's RESPONSE line (with its LF) to `response` and its journal line (a
/// [`JournalEntry`](crate::JournalEntry) as JSON, with its LF) to `journal`. `scratch` is
/// reused for the masked number.
///
/// RESPONSE fields, in order: `xIndex`, `xSequenceNumber`, `xResult`, `xStatus`, `xError`,
/// `xErrorCode`, `xRefNum`; when approved `xAuthCode`, `xAuthAmount`, `xToken`; the masked
/// number and `xCardType`; when approved the AVS and CVV results; `xInvoice` when sent (even
/// empty); `xBatch`.
pub(crate) fn write_answer<F: Fields + ?Sized>(
    ctx: &LineCtx<'_>,
    req: &F,
    o: &Outcome<'_>,
    vault: &Vault,
    scratch: &mut String,
    response: &mut Vec<u8>,
    journal: &mut Vec<u8>,
) {
    let sp = ctx.spaces;
    let approved = o.verdict.is_ok();
    let (result, status, code) = match o.verdict {
        Ok(()) => ("A", "Approved", "00000"),
        Err(r) => (r.result(), r.status(), r.code()),
    };
    // Values this simulator made (digits, hex, fixed words, masks of checked numbers) are
    // copied as they are; what came from a request or a state file is encoded.
    let masked = o.shown.as_ref().map(|s| masked_text(s, vault, scratch));
    let token = o
        .token
        .filter(|_| approved)
        .and_then(|i| vault.entry(i))
        .map(|e| e.token.as_str());
    let ref_num = Decimal::new(ctx.ref_num);

    out::kvp_u64("xIndex", ctx.index, response);
    out::kvp_plain("xSequenceNumber", ctx.sequence_text, response);
    match o.verdict {
        // The usual case in one piece.
        Ok(()) => {
            response.extend_from_slice(b"&xResult=A&xStatus=Approved&xError=&xErrorCode=00000")
        }
        Err(r) => {
            out::kvp_plain("xResult", result, response);
            out::kvp_plain("xStatus", status, response);
            out::kvp_pair("xError", &r.message(), sp, response);
            out::kvp_plain("xErrorCode", code, response);
        }
    }
    out::kvp_plain("xRefNum", ref_num.as_str(), response);
    if approved {
        if o.auth_code {
            let digest = vault.keyed_digest(&["auth", ref_num.as_str()]);
            let mut hex = [0u8; 6];
            let code = out::hex_lower_into(&digest[..3], &mut hex).to_ascii_uppercase();
            out::kvp_plain("xAuthCode", &code, response);
        }
        if let Some(a) = o.amount {
            response.extend_from_slice(b"&xAuthAmount=");
            out::cents(a, response);
        }
        if let Some(t) = token {
            out::kvp_pair("xToken", t, sp, response);
        }
    }
    if let Some((m, plain)) = masked {
        if plain {
            out::kvp_plain(o.masked_key, m, response);
        } else {
            out::kvp_pair(o.masked_key, m, sp, response);
        }
    }
    if o.brand
        && let Some(b) = o.shown.as_ref().map(|s| brand_text(s, vault))
    {
        out::kvp_pair("xCardType", b, sp, response);
    }
    if approved {
        if o.avs {
            out::kvp_plain("xAvsResultCode", "YYY", response);
            out::kvp_pair(
                "xAvsResult",
                "Address: Match & 5 Digit Zip: Match",
                sp,
                response,
            );
        }
        if o.cvv {
            out::kvp_plain("xCvvResultCode", "M", response);
            out::kvp_plain("xCvvResult", "Match", response);
        }
    }
    if let Some(inv) = req.raw(Key::Invoice) {
        out::kvp_pair("xInvoice", inv, sp, response);
    }
    out::kvp_plain("xBatch", ctx.sequence_text, response);
    response.push(b'\n');

    // Field order and omissions as `JournalEntry`'s serde derive writes them.
    let mut j = JsonObject::begin(journal);
    // Account names are `[A-Za-z0-9._-]` (checked by `GatewaySim::new`).
    j.plain_str("account", ctx.account);
    j.raw_number("sequence", ctx.sequence_text);
    j.u64("index", ctx.index);
    // Values as the client sent them, but never a card number typed into the wrong field.
    let invoice = req.field(Key::Invoice).map(kvp_format::mask_card_numbers);
    j.opt_str("invoice", invoice.as_deref());
    // The command as given, lower case (the canonical name when it is known).
    let command = kvp_format::mask_card_numbers(req.raw(Key::Command).unwrap_or(""));
    let command = command.as_ref();
    if command.bytes().any(|b| b.is_ascii_uppercase()) {
        j.str("command", &command.to_ascii_lowercase());
    } else {
        j.str("command", command);
    }
    j.plain_str("result", result);
    j.plain_str("error_code", code);
    j.plain_str("ref_num", ref_num.as_str());
    j.opt_str("target_ref_num", o.target);
    if let Some(a) = o.amount.filter(|_| approved) {
        j.u64("amount_cents", a);
    }
    j.opt_str("token", token);
    match masked {
        Some((m, true)) => j.plain_str("masked", m),
        Some((m, false)) => j.str("masked", m),
        None => {}
    }
    // `m-` and hex (`Vault::merchant_id`).
    if let Some(m) = o.merchant {
        j.plain_str("merchant", m);
    }
    if let Some(fp) = o.fingerprint.filter(|_| approved) {
        j.raw_str("fingerprint", |out| out::hex_lower(&fp.to_be_bytes(), out));
    }
    j.raw_number("at_unix_ms", ctx.now_ms_text);
    j.end();
    journal.push(b'\n');
}

/// The masked number of a payment source (`4xxxxxxxxxxx1111`, `xxxxx6789`, or as stored with
/// its token), built in `scratch` when it has to be; `true` when it is digits and `x` only
/// (a number the rules checked), so needs no encoding.
fn masked_text<'s>(
    shown: &'s Shown<'_>,
    vault: &'s Vault,
    scratch: &'s mut String,
) -> (&'s str, bool) {
    match shown {
        Shown::Card(n) => {
            card::mask_card_into(n, scratch);
            (scratch, true)
        }
        Shown::Account(a) => {
            card::mask_account_into(a, scratch);
            (scratch, true)
        }
        Shown::Vault(i) => (vault.entry(*i).map_or("", |e| e.masked.as_str()), false),
    }
}

/// The `xCardType` of a payment source.
fn brand_text<'s>(shown: &'s Shown<'_>, vault: &'s Vault) -> &'s str {
    match shown {
        Shown::Card(n) => card::card_type(n),
        Shown::Account(_) => "Check",
        Shown::Vault(i) => vault.entry(*i).map_or("", |e| e.brand.as_str()),
    }
}

fn decide<'a, F: Fields + ?Sized>(
    ctx: &LineCtx<'a>,
    req: &'a F,
    book: &Book,
    vault: &mut Vault,
    o: &mut Outcome<'a>,
) -> Result<(), Refusal> {
    let key = req.field(Key::Merchant).ok_or(Refusal::Missing("xKey"))?;
    let merchant = ctx.merchants.id_of(key).ok_or(Refusal::InvalidKey)?;
    o.merchant = Some(merchant);
    for f in [Key::Version, Key::SoftwareName, Key::SoftwareVersion] {
        req.field(f).ok_or(Refusal::Missing(f.name()))?;
    }
    let raw = req
        .field(Key::Command)
        .ok_or(Refusal::Missing("xCommand"))?;
    let command = Command::parse(raw).ok_or(Refusal::UnsupportedCommand)?;
    o.command = Some(command);
    match command {
        Command::Sale | Command::AuthOnly | Command::Credit | Command::Save => {
            let CardSource { hash, shown, exp } = card_source(req, ctx.now, vault)?;
            let card_refusal = match &shown {
                Shown::Card(n) => refusal::for_card(n),
                _ => None,
            };
            o.shown = Some(shown);
            o.brand = true;
            let amount = if command == Command::Save {
                None
            } else {
                Some(amount(req)?)
            };
            o.amount = amount;
            if let Some(a) = amount {
                let fp = fingerprint(vault, merchant, command, a, &hash, req);
                if command != Command::Credit
                    && !allow_duplicate(req)
                    && book.is_duplicate(fp, ctx.now_ms)
                {
                    return Err(Refusal::Duplicate);
                }
                o.fingerprint = Some(fp);
            }
            if let Some(r) = card_refusal {
                return Err(r);
            }
            if let Some(r) = amount
                .filter(|_| command != Command::Credit)
                .and_then(refusal::for_amount)
            {
                return Err(r);
            }
            o.token = Some(match &o.shown {
                // A token's own entry: the vault has exactly one entry per source.
                Some(Shown::Vault(i)) => *i,
                Some(Shown::Card(n)) => vault.tokenize(&hash, SourceKind::Card, || {
                    (
                        card::mask_card(n),
                        card::card_type(n).to_owned(),
                        exp.map(|e| e.into_owned()),
                    )
                }),
                _ => return Err(Refusal::InvalidToken),
            });
            o.auth_code = command != Command::Save;
            if matches!(command, Command::Sale | Command::AuthOnly) {
                o.avs = req.field(Key::Zip).is_some() || req.field(Key::Street).is_some();
                o.cvv = req.field(Key::Cvv).is_some();
            }
            Ok(())
        }
        Command::CheckSale => {
            o.masked_key = "xMaskedAccountNumber";
            let CheckSource {
                hash,
                shown,
                number,
            } = check_source(req, vault)?;
            o.shown = Some(shown);
            let a = amount(req)?;
            o.amount = Some(a);
            let fp = fingerprint(vault, merchant, command, a, &hash, req);
            if !allow_duplicate(req) && book.is_duplicate(fp, ctx.now_ms) {
                return Err(Refusal::Duplicate);
            }
            o.fingerprint = Some(fp);
            if number == Some(refusal::NSF_ACCOUNT) {
                return Err(Refusal::InsufficientFunds);
            }
            if let Some(r) = refusal::for_amount(a) {
                return Err(r);
            }
            o.token = Some(match &o.shown {
                Some(Shown::Vault(i)) => *i,
                _ => vault.tokenize(&hash, SourceKind::Check, || {
                    (
                        card::mask_account(number.unwrap_or_default()),
                        "Check".to_owned(),
                        None,
                    )
                }),
            });
            Ok(())
        }
        Command::Capture | Command::Refund | Command::Void => {
            let target = req.field(Key::RefNum).ok_or(Refusal::Missing("xRefNum"))?;
            o.target = Some(target);
            let t = book
                .get(target, merchant)
                .ok_or(Refusal::OriginalNotFound)?;
            if t.voided {
                return Err(Refusal::AlreadyVoided);
            }
            let requested = match req.field(Key::Amount) {
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
                    o.amount = Some(a);
                }
                Command::Refund => {
                    let root = book
                        .refund_root(target, merchant)
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
                    o.amount = Some(a);
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
                    o.amount = Some(t.amount);
                }
            }
            Ok(())
        }
    }
}

fn amount<F: Fields + ?Sized>(req: &F) -> Result<u64, Refusal> {
    let s = req.field(Key::Amount).ok_or(Refusal::Missing("xAmount"))?;
    Cents::parse(s)
        .map(|c| c.0)
        .ok_or(Refusal::Invalid("xAmount"))
}

fn allow_duplicate<F: Fields + ?Sized>(req: &F) -> bool {
    req.field(Key::AllowDuplicate)
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The duplicate-check identity of a money transaction: merchant, command, amount, payment
/// source and invoice (an invoice sharpens the check: different invoices are not duplicates).
/// The first 128 bits of a salted SHA-256 (the journal writes them as 32 hex digits).
fn fingerprint<F: Fields + ?Sized>(
    vault: &Vault,
    merchant: &str,
    command: Command,
    cents: u64,
    source_hash: &Digest32,
    req: &F,
) -> u128 {
    let invoice = req.field(Key::Invoice).unwrap_or("");
    let mut hex = [0u8; 64];
    let digest = vault.keyed_digest(&[
        "dup",
        merchant,
        command.name(),
        Decimal::new(cents).as_str(),
        out::hex_lower_into(source_hash, &mut hex),
        invoice,
    ]);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JournalEntry;
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
            let now_ms = crate::clock::unix_millis(self.now);
            let now_ms_text = Decimal::new(now_ms);
            let ctx = LineCtx {
                account: "acme",
                sequence_text: "1",
                index: self.n,
                now: self.now,
                now_ms,
                now_ms_text: now_ms_text.as_str(),
                merchants: &self.merchants,
                ref_num: 1000 + self.n,
                spaces: SpaceEncoding::Percent20,
            };
            let outcome = process_line(&ctx, pairs, &mut self.book, &mut self.vault);
            let (mut response, mut journal, mut scratch) = (Vec::new(), Vec::new(), String::new());
            write_answer(
                &ctx,
                pairs,
                &outcome,
                &self.vault,
                &mut scratch,
                &mut response,
                &mut journal,
            );
            let response = response.strip_suffix(b"\n").expect("one RESPONSE line");
            assert!(!response.contains(&b'\n'));
            let fields: Vec<(String, String)> = kvp_format::decode_line(response)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(
                fields[..2],
                [
                    ("xIndex".to_owned(), self.n.to_string()),
                    ("xSequenceNumber".to_owned(), "1".to_owned())
                ]
            );
            let journal = journal.strip_suffix(b"\n").expect("one journal line");
            let entry: JournalEntry = serde_json::from_slice(journal).unwrap();
            // Written by hand, byte for byte what serde would write.
            assert_eq!(serde_json::to_vec(&entry).unwrap(), journal);
            assert_eq!(entry.result, outcome.result());
            Answer {
                fields: fields[2..].to_vec(),
                entry,
            }
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

    /// A line's RESPONSE fields (without `xIndex`, `xSequenceNumber`) and its journal entry,
    /// read back from the bytes written.
    struct Answer {
        fields: Vec<(String, String)>,
        entry: JournalEntry,
    }

    fn get(a: &Answer, k: &str) -> String {
        a.fields
            .iter()
            .find(|(key, _)| key == k)
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
                if !matches!(k.as_str(), "xToken" | "xAuthCode") {
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
