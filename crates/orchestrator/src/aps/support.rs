//! Input validation before anything is reserved: an APS record checked exactly as the batch
//! file writer will read it. (The simulator's view of an account and the generated APS
//! workload live in the `paybatch-demo` crate.)

use super::batch_file::ApsTransaction;
use super::currency::Currency;
use super::error::Result;

/// Checks one input record of an APS account (its fields without `account` and `ref`)
/// exactly as the batch file writer will; use it where Sola records are checked for
/// `xCommand`, so a bad line is reported with its input line before anything is reserved.
///
/// # Errors
/// [`super::Error::Input`] naming the field (`command`, `merchant_reference`, `amount`, ...).
pub fn check_input(fields: &[(String, String)], default_currency: Option<Currency>) -> Result<()> {
    ApsTransaction::from_fields(
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        default_currency,
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_input_names_the_field() {
        let bad = vec![("command".to_owned(), "SALE".to_owned())];
        let err = check_input(&bad, None).unwrap_err();
        assert!(err.to_string().contains("`command`"), "{err}");
    }
}
