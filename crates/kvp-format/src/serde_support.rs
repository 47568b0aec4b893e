//! serde support through `serde_urlencoded`, for users who want their own structs.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Record;
use crate::codec::decode_line;
use crate::error::{Error, Result};
use crate::redact::{is_sensitive, mask_digit_runs, mask_value};

impl Record {
    /// Deserializes the record into a struct of yours, through `serde_urlencoded` (field names
    /// are the keys; values are strings parsed with `FromStr`-like rules).
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Sale { #[serde(rename = "xAmount")] amount: f64, #[serde(rename = "xName")] name: String }
    /// let rec = kvp_format::Record::from_iter([("xAmount", "1.50"), ("xName", "Jo Smith")]);
    /// let sale: Sale = rec.to_struct()?;
    /// assert_eq!((sale.amount, sale.name.as_str()), (1.5, "Jo Smith"));
    /// # Ok::<(), kvp_format::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Serde`] with serde's message (sensitive values masked).
    pub fn to_struct<T: DeserializeOwned>(&self) -> Result<T> {
        let mut line = Vec::with_capacity(256);
        self.encode_into(&mut line);
        serde_urlencoded::from_bytes(&line).map_err(|e| self.serde_error(&e.to_string()))
    }

    /// Serializes a struct of yours into a record, through `serde_urlencoded` (field order
    /// kept). The record encodes canonically whatever `serde_urlencoded` itself would emit.
    ///
    /// # Errors
    /// [`Error::Serde`] for values `serde_urlencoded` cannot represent (nested structs, ...).
    pub fn from_struct<T: Serialize>(value: &T) -> Result<Record> {
        let line = serde_urlencoded::to_string(value).map_err(|e| Error::Serde {
            message: e.to_string(),
        })?;
        let pairs = decode_line(line.as_bytes())?;
        Ok(pairs.into_iter().collect())
    }

    fn serde_error(&self, message: &str) -> Error {
        let mut message = message.to_owned();
        for (k, v) in self
            .iter()
            .filter(|(k, v)| is_sensitive(k) && !v.is_empty())
        {
            message = message.replace(v, &mask_value(k, v));
        }
        // A card number used as a key (an unknown field) would be echoed as is.
        Error::Serde {
            message: mask_digit_runs(&message).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sale {
        #[serde(rename = "xCommand")]
        command: String,
        #[serde(rename = "xAmount")]
        amount: u32,
        #[serde(rename = "xCardNum")]
        card: String,
    }

    #[test]
    fn struct_round_trip() {
        let sale = Sale {
            command: "cc:sale".into(),
            amount: 5,
            card: "4111 1111".into(),
        };
        let rec = Record::from_struct(&sale).unwrap();
        assert_eq!(
            rec.to_line(),
            "xCommand=cc%3Asale&xAmount=5&xCardNum=4111%201111"
        );
        assert_eq!(rec.to_struct::<Sale>().unwrap(), sale);
    }

    #[test]
    fn errors_do_not_leak_secrets() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            #[serde(rename = "xCardNum")]
            card: u8,
        }
        let rec = Record::from_iter([("xCardNum", "4111111111111111")]);
        let e = rec.to_struct::<Strict>().unwrap_err().to_string();
        assert!(!e.contains("4111111111111111"), "{e}");
    }
}
