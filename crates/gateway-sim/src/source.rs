//! Payment sources: exactly one of a card number with expiry, a token this gateway issued,
//! or track data — or, for checks, a routing and account number or a check token.

use std::borrow::Cow;
use std::time::SystemTime;

use crate::card::{self, ExpiryProblem};
use crate::fields::{Fields, Key};
use crate::refusal::Refusal;
use crate::vault::{Digest32, SourceKind, Vault};

/// How a payment source is shown in answers: masked, never the number itself.
#[derive(Debug, Clone)]
pub(crate) enum Shown<'a> {
    /// A card number given in the request (or read from track data): shown masked
    /// (`4xxxxxxxxxxx1111`), its brand from its prefix.
    Card(Cow<'a, str>),
    /// A bank account number given in the request: shown masked (`xxxxx6789`).
    Account(&'a str),
    /// A token's vault entry (its position): its stored masked number and brand.
    Vault(usize),
}

/// A card payment source, resolved: never holds more of the number than the rules need.
pub(crate) struct CardSource<'a> {
    pub hash: Digest32,
    /// What to show; for a number, the number itself, only to mask it and to consult the
    /// decline table (dropped with this value).
    pub shown: Shown<'a>,
    pub exp: Option<Cow<'a, str>>,
}

pub(crate) fn card_source<'a>(
    req: &'a (impl Fields + ?Sized),
    now: SystemTime,
    vault: &Vault,
) -> Result<CardSource<'a>, Refusal> {
    let card = req.field(Key::CardNum);
    let token = req.field(Key::Token);
    let track = req.field(Key::Magstripe);
    match [card.is_some(), token.is_some(), track.is_some()]
        .iter()
        .filter(|&&b| b)
        .count()
    {
        0 => return Err(Refusal::Missing("xCardNum")),
        1 => {}
        _ => return Err(Refusal::TooManySources),
    }
    if let Some(t) = token {
        let (i, e) = vault
            .by_token(t)
            .filter(|(_, e)| e.kind == SourceKind::Card)
            .ok_or(Refusal::InvalidToken)?;
        let exp = match req.field(Key::Exp) {
            Some(x) => Some(Cow::Borrowed(x)),
            None => e.exp.clone().map(Cow::Owned),
        };
        if let Some(x) = &exp {
            expiry(x, now)?;
        }
        return Ok(CardSource {
            hash: vault.entry_hash(i).ok_or(Refusal::InvalidToken)?,
            shown: Shown::Vault(i),
            exp,
        });
    }
    let (number, exp): (Cow<'a, str>, Cow<'a, str>) = match (card, track) {
        (Some(n), _) => {
            if !card::is_valid_card_number(n) {
                return Err(Refusal::InvalidCard);
            }
            (
                Cow::Borrowed(n),
                Cow::Borrowed(req.field(Key::Exp).ok_or(Refusal::Missing("xExp"))?),
            )
        }
        (None, Some(t)) => {
            let (n, e) = parse_track(t).ok_or(Refusal::Invalid("xMagstripe"))?;
            (Cow::Owned(n), Cow::Owned(e))
        }
        (None, None) => return Err(Refusal::Missing("xCardNum")),
    };
    if !card::is_valid_card_number(&number) {
        return Err(Refusal::InvalidCard);
    }
    expiry(&exp, now)?;
    Ok(CardSource {
        hash: vault.source_hash(SourceKind::Card, &number),
        shown: Shown::Card(number),
        exp: Some(exp),
    })
}

fn expiry(exp: &str, now: SystemTime) -> Result<(), Refusal> {
    card::check_expiry(exp, now).map_err(|p| match p {
        ExpiryProblem::Malformed => Refusal::Invalid("xExp"),
        ExpiryProblem::Expired => Refusal::CardExpired,
    })
}

/// PAN and MMYY from track 1 (`%B<pan>^<name>^<YYMM>...`) or track 2 (`;<pan>=<YYMM>...`).
fn parse_track(t: &str) -> Option<(String, String)> {
    let (pan, rest) = if let Some(body) = t.strip_prefix("%B") {
        let mut parts = body.splitn(3, '^');
        let pan = parts.next()?;
        let _name = parts.next()?;
        (pan, parts.next()?)
    } else {
        t.strip_prefix(';').unwrap_or(t).split_once('=')?
    };
    let yymm = rest.get(..4)?;
    if !yymm.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((pan.to_owned(), format!("{}{}", &yymm[2..], &yymm[..2])))
}

pub(crate) struct CheckSource<'a> {
    pub hash: Digest32,
    pub shown: Shown<'a>,
    /// The account number, when it was given (not a token).
    pub number: Option<&'a str>,
}

pub(crate) fn check_source<'a>(
    req: &'a (impl Fields + ?Sized),
    vault: &Vault,
) -> Result<CheckSource<'a>, Refusal> {
    let token = req.field(Key::Token);
    let account = req.field(Key::Account);
    let routing = req.field(Key::Routing);
    if let Some(t) = token {
        if account.is_some() || routing.is_some() {
            return Err(Refusal::TooManySources);
        }
        let (i, _) = vault
            .by_token(t)
            .filter(|(_, e)| e.kind == SourceKind::Check)
            .ok_or(Refusal::InvalidToken)?;
        return Ok(CheckSource {
            hash: vault.entry_hash(i).ok_or(Refusal::InvalidToken)?,
            shown: Shown::Vault(i),
            number: None,
        });
    }
    let routing = routing.ok_or(Refusal::Missing("xRouting"))?;
    let account = account.ok_or(Refusal::Missing("xAccount"))?;
    if !card::is_valid_routing(routing) {
        return Err(Refusal::Invalid("xRouting"));
    }
    if !card::is_valid_account(account) {
        return Err(Refusal::Invalid("xAccount"));
    }
    Ok(CheckSource {
        hash: vault.source_hash(SourceKind::Check, &format!("{routing}/{account}")),
        shown: Shown::Account(account),
        number: Some(account),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_data() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("%B4111111111111111^SMITH/JO^3012101000?", Some(("4111111111111111", "1230"))),
            (";4111111111111111=30121010000?", Some(("4111111111111111", "1230"))),
            ("4111111111111111=2901", Some(("4111111111111111", "0129"))),
            ("%B4111111111111111^SMITH/JO", None),
            (";4111111111111111=3X12", None),
            (";4111111111111111=301", None),
            ("garbage", None),
        ];
        for &(t, want) in cases {
            let got = parse_track(t);
            let got = got.as_ref().map(|(p, e)| (p.as_str(), e.as_str()));
            assert_eq!(got, want, "{t}");
        }
    }
}
