//! The `xCommand` values the simulator processes.

/// A simulated transaction command (`xCommand`, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Command {
    /// `cc:sale`: authorize and capture.
    Sale,
    /// `cc:authonly`: authorize, capture later with `cc:capture`.
    AuthOnly,
    /// `cc:capture`: capture an earlier `cc:authonly`.
    Capture,
    /// `cc:credit`: an unreferenced credit to a card.
    Credit,
    /// `cc:refund`: refund (part of) an earlier captured sale.
    Refund,
    /// `cc:void`: cancel an earlier transaction.
    Void,
    /// `cc:save`: tokenize a card, no money moves.
    Save,
    /// `check:sale`: debit a bank account.
    CheckSale,
}

impl Command {
    /// Parses `xCommand`; `None` for anything the sim does not simulate.
    pub(crate) fn parse(s: &str) -> Option<Command> {
        const TABLE: &[(&str, Command)] = &[
            ("cc:sale", Command::Sale),
            ("cc:authonly", Command::AuthOnly),
            ("cc:capture", Command::Capture),
            ("cc:credit", Command::Credit),
            ("cc:refund", Command::Refund),
            ("cc:void", Command::Void),
            ("cc:save", Command::Save),
            ("check:sale", Command::CheckSale),
        ];
        TABLE
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, c)| c)
    }

    /// The canonical lower-case name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Command::Sale => "cc:sale",
            Command::AuthOnly => "cc:authonly",
            Command::Capture => "cc:capture",
            Command::Credit => "cc:credit",
            Command::Refund => "cc:refund",
            Command::Void => "cc:void",
            Command::Save => "cc:save",
            Command::CheckSale => "check:sale",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<Command>)] = &[
            ("cc:sale", Some(Command::Sale)),
            ("cc:Sale", Some(Command::Sale)),
            ("CC:AUTHONLY", Some(Command::AuthOnly)),
            ("cc:capture", Some(Command::Capture)),
            ("cc:credit", Some(Command::Credit)),
            ("cc:refund", Some(Command::Refund)),
            ("cc:void", Some(Command::Void)),
            ("cc:save", Some(Command::Save)),
            ("Check:Sale", Some(Command::CheckSale)),
            ("cc:adjust", None),
            ("sale", None),
            ("", None),
        ];
        for &(s, want) in cases {
            assert_eq!(Command::parse(s), want, "{s}");
            if let Some(c) = want {
                assert_eq!(Command::parse(c.name()), Some(c));
            }
        }
    }
}
