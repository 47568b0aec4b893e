//! Payment sources: exactly one of a card number with expiry, a token this gateway issued,
//! or track data — or, for checks, a routing and account number or a check token.

use std::time::SystemTime;

use crate::card::{self, ExpiryProblem};
use crate::process::Fields;
use crate::refusal::Refusal;
use crate::vault::{SourceKind, Vault};

/// A card payment source, resolved: never holds more of the number than the rules need.
pub(crate) struct CardSource {
    pub hash: String,
    pub masked: String,
    pub brand: String,
    pub exp: Option<String>,
    /// The number itself, only to consult the decline table; dropped with this value.
    pub number: Option<String>,
}

pub(crate) fn card_source(
    req: &(impl Fields + ?Sized),
    now: SystemTime,
    vault: &Vault,
) -> Result<CardSource, Refusal> {
    let card = req.field("xCardNum");
    let token = req.field("xToken");
    let track = req.field("xMagstripe");
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
        let e = vault
            .by_token(t)
            .filter(|e| e.kind == SourceKind::Card)
            .ok_or(Refusal::InvalidToken)?;
        let exp = req
            .field("xExp")
            .map(str::to_owned)
            .or_else(|| e.exp.clone());
        if let Some(x) = &exp {
            expiry(x, now)?;
        }
        return Ok(CardSource {
            hash: e.hash.clone(),
            masked: e.masked.clone(),
            brand: e.brand.clone(),
            exp,
            number: None,
        });
    }
    let (number, exp) = match (card, track) {
        (Some(n), _) => {
            if !card::is_valid_card_number(n) {
                return Err(Refusal::InvalidCard);
            }
            (
                n.to_owned(),
                req.field("xExp")
                    .ok_or(Refusal::Missing("xExp"))?
                    .to_owned(),
            )
        }
        (None, Some(t)) => parse_track(t).ok_or(Refusal::Invalid("xMagstripe"))?,
        (None, None) => return Err(Refusal::Missing("xCardNum")),
    };
    if !card::is_valid_card_number(&number) {
        return Err(Refusal::InvalidCard);
    }
    expiry(&exp, now)?;
    Ok(CardSource {
        hash: vault.source_hash(SourceKind::Card, &number),
        masked: card::mask_card(&number),
        brand: card::card_type(&number).to_owned(),
        exp: Some(exp),
        number: Some(number),
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

pub(crate) struct CheckSource {
    pub hash: String,
    pub masked: String,
    pub number: Option<String>,
}

pub(crate) fn check_source(
    req: &(impl Fields + ?Sized),
    vault: &Vault,
) -> Result<CheckSource, Refusal> {
    let token = req.field("xToken");
    let account = req.field("xAccount");
    let routing = req.field("xRouting");
    if let Some(t) = token {
        if account.is_some() || routing.is_some() {
            return Err(Refusal::TooManySources);
        }
        let e = vault
            .by_token(t)
            .filter(|e| e.kind == SourceKind::Check)
            .ok_or(Refusal::InvalidToken)?;
        return Ok(CheckSource {
            hash: e.hash.clone(),
            masked: e.masked.clone(),
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
        masked: card::mask_account(account),
        number: Some(account.to_owned()),
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
