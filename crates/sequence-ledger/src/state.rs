//! The batch state machine: states, the transitions callers ask for, and the table of legal
//! steps. Pure: no I/O here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the gateway answered a batch (the `xStatus` of `COMPLETE_X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BatchOutcome {
    /// `xStatus=Success`: the batch was processed; per-line results are in `RESPONSE_X`.
    Success,
    /// Any other `xStatus`: the gateway rejected the batch. What became of its lines is read
    /// from whatever answer it left (PROTOCOL.md decision 4): a line with its own result
    /// keeps it; when a line may be sent again is
    /// [`crate::BatchRecord::releases_line_under`]'s rule.
    GatewayError,
}

/// Where a batch is. The legal steps (anything else is [`crate::Error::IllegalTransition`]):
///
/// | from | to | asked with |
/// |---|---|---|
/// | `Reserved` | `RequestUploaded` | [`Transition::RequestUploaded`], or [`Transition::RequestUploadedAs`] with the gateway's batch id |
/// | `RequestUploaded` | `Triggered` | [`Transition::Triggered`] (also checked for order, see below) |
/// | `Triggered` | `Completed(Success \| GatewayError)` | [`Transition::Completed`] |
/// | `Triggered` | `Stuck` | [`Transition::Stuck`] (no COMPLETE by the deadline) |
/// | `Stuck` | `Completed(..)` | [`Transition::Completed`] (a late COMPLETE found by a later collect) |
/// | `Completed(..)` | `Collected` | [`crate::Ledger::store_results`] (for `GatewayError`: whatever RESPONSE held, maybe nothing) |
/// | `Collected` | `Cleaned` | [`Transition::Cleaned`] (RESPONSE_X and COMPLETE_X deleted) |
/// | `Reserved`, `RequestUploaded`, `Triggered`, `Stuck` | `Abandoned` | [`Transition::Abandoned`] (operator, with a reason) |
/// | `RequestUploaded`, `Triggered`, `Stuck`, `Completed(..)`, `Collected` | `MarkedUnknown` | [`Transition::MarkedUnknown`] (operator, with a reason) |
///
/// `Cleaned`, `Abandoned` and `MarkedUnknown` are final. A step to the state a batch is already in is illegal
/// too: a repeated step is a caller bug, not something to paper over.
///
/// `Triggered` additionally requires (PROTOCOL.md §2 items 5 and 6) that no other batch of the
/// account is `Triggered` or `Stuck`, that no lower-numbered batch is still `Reserved` or
/// `RequestUploaded` (the gateway would ignore it once a higher number arrived), and that the
/// number is above every number ever triggered for the account; otherwise
/// [`crate::Error::OutOfOrder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BatchState {
    /// The number is durable and the transactions are bound to it; nothing uploaded yet.
    Reserved,
    /// `REQUEST_X` is written and verified.
    RequestUploaded,
    /// `PROCESS_X` is written: the gateway may be processing.
    Triggered,
    /// `COMPLETE_X` was seen.
    Completed(BatchOutcome),
    /// The per-line results are stored in the ledger.
    Collected,
    /// `RESPONSE_X` and `COMPLETE_X` are deleted. Final.
    Cleaned,
    /// No COMPLETE by the deadline: its transactions are unknown, never resubmitted
    /// automatically.
    Stuck,
    /// An operator gave up on the batch, with a reason: the gateway confirmed it never
    /// processed it, so its transactions are released for a new batch. Final.
    Abandoned,
    /// An operator closed a batch whose answer cannot be had (no COMPLETE, or a COMPLETE whose
    /// RESPONSE is missing or unusable), with a reason. Its transactions stay bound to it and
    /// are reported `unknown` for ever: they may have been processed, so they are never sent
    /// again; the account's later batches go on. Final.
    MarkedUnknown,
}

impl BatchState {
    /// A short stable name: `Reserved`, `RequestUploaded`, `Triggered`, `Completed`,
    /// `Collected`, `Cleaned`, `Stuck`, `Abandoned`.
    pub fn name(self) -> &'static str {
        match self {
            BatchState::Reserved => "Reserved",
            BatchState::RequestUploaded => "RequestUploaded",
            BatchState::Triggered => "Triggered",
            BatchState::Completed(_) => "Completed",
            BatchState::Collected => "Collected",
            BatchState::Cleaned => "Cleaned",
            BatchState::Stuck => "Stuck",
            BatchState::Abandoned => "Abandoned",
            BatchState::MarkedUnknown => "MarkedUnknown",
        }
    }

    /// True for `Cleaned`, `Abandoned` and `MarkedUnknown`, the states a batch never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BatchState::Cleaned | BatchState::Abandoned | BatchState::MarkedUnknown
        )
    }

    /// True for the states in which the gateway may have received `PROCESS_X` (or may yet
    /// process the batch): from `RequestUploaded` on — the trigger may have been written just
    /// before a crash that kept the ledger from recording it — except `Abandoned`, which an
    /// operator set because the gateway confirmed it never processed the batch. A line bound
    /// to such a batch is never `not_processed` until the batch's answer is read.
    pub fn may_have_been_triggered(self) -> bool {
        !matches!(self, BatchState::Reserved | BatchState::Abandoned)
    }

    /// Whether the table above allows `self -> to`.
    pub fn can_become(self, to: BatchState) -> bool {
        use BatchState::*;
        matches!(
            (self, to),
            (Reserved, RequestUploaded)
                | (RequestUploaded, Triggered)
                | (Triggered, Completed(_))
                | (Triggered, Stuck)
                | (Stuck, Completed(_))
                | (Completed(_), Collected)
                | (Collected, Cleaned)
                | (Reserved | RequestUploaded | Triggered | Stuck, Abandoned)
                | (
                    RequestUploaded | Triggered | Stuck | Completed(_) | Collected,
                    MarkedUnknown
                )
        )
    }
}

impl fmt::Display for BatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchState::Completed(BatchOutcome::Success) => f.write_str("Completed(Success)"),
            BatchState::Completed(BatchOutcome::GatewayError) => {
                f.write_str("Completed(GatewayError)")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// The gateway's verdict on a batch: the fields of `COMPLETE_X` the ledger keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Success or a gateway error.
    pub outcome: BatchOutcome,
    /// `xStatus` as the gateway wrote it.
    pub status: String,
    /// `xError`, if any.
    pub error: Option<String>,
    /// `xProcessedCount`, if given.
    pub processed_count: Option<u64>,
}

impl Verdict {
    /// A verdict with only an outcome and a status.
    pub fn new(outcome: BatchOutcome, status: impl Into<String>) -> Self {
        Verdict {
            outcome,
            status: status.into(),
            error: None,
            processed_count: None,
        }
    }

    /// The verdict of a parsed `COMPLETE_X` file (success is `xStatus=Success`, any case).
    pub fn from_complete(complete: &kvp_format::CompleteFile) -> Self {
        Verdict {
            outcome: if complete.is_success() {
                BatchOutcome::Success
            } else {
                BatchOutcome::GatewayError
            },
            status: complete.status.clone(),
            error: complete.error.clone(),
            processed_count: complete.processed_count,
        }
    }

    /// True when the gateway says it processed nothing: an error outcome with
    /// `xProcessedCount=0`. Only then may the batch's transactions be bound to a new number
    /// (PROTOCOL.md §2 item 6).
    pub fn proves_nothing_processed(&self) -> bool {
        self.outcome == BatchOutcome::GatewayError && self.processed_count == Some(0)
    }
}

/// The rest of `COMPLETE_X` beside the [`Verdict`]: `xResult` and every other field the
/// gateway wrote (the echoes `xSubmittedCount`, `xFormat`, `xSequenceNumber`, anything
/// unknown), in file order. Sensitive keys (`kvp_format::is_sensitive`, e.g. an echoed `xKey`)
/// are dropped by the constructors and again by the ledger before it stores them: they are
/// never stored.
///
/// Kept apart from [`Verdict`] (not as fields of it) so that code building a `Verdict` with a
/// struct literal keeps compiling; recorded with [`Transition::CompletedWith`], stored as
/// [`crate::BatchRecord::complete_fields`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteFields {
    /// `xResult`, if present.
    #[serde(default)]
    pub result: Option<String>,
    /// Every other field except `xStatus`, `xError` and `xProcessedCount` (kept in the
    /// [`Verdict`]) and sensitive keys (dropped), in file order.
    #[serde(default)]
    pub extra: Vec<(String, String)>,
}

/// Keys a [`Verdict`] already holds.
const VERDICT_KEYS: [&str; 3] = [
    kvp_format::keys::STATUS,
    kvp_format::keys::ERROR,
    kvp_format::keys::PROCESSED_COUNT,
];

impl CompleteFields {
    /// Sorts COMPLETE's pairs (in file order, keys matched ASCII case-insensitively): the
    /// first `xResult` becomes [`CompleteFields::result`]; `xStatus`, `xError` and
    /// `xProcessedCount` are skipped (the [`Verdict`] has them); sensitive keys are dropped;
    /// the rest (a repeated `xResult` too) goes to [`CompleteFields::extra`].
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut fields = CompleteFields::default();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            if kvp_format::is_sensitive(k) || VERDICT_KEYS.iter().any(|x| x.eq_ignore_ascii_case(k))
            {
                continue;
            }
            if fields.result.is_none() && k.eq_ignore_ascii_case(kvp_format::keys::RESULT) {
                fields.result = Some(v.to_owned());
            } else {
                fields.extra.push((k.to_owned(), v.to_owned()));
            }
        }
        fields
    }

    /// The fields of a parsed `COMPLETE_X` file: `xResult`, then `xSubmittedCount`,
    /// `xFormat`, `xSequenceNumber` and the file's other non-sensitive pairs.
    pub fn from_complete(complete: &kvp_format::CompleteFile) -> Self {
        CompleteFields::from_pairs(&complete.to_record())
    }

    /// The same fields without any sensitive key (what the ledger stores).
    pub(crate) fn without_sensitive(mut self) -> Self {
        self.extra.retain(|(k, _)| !kvp_format::is_sensitive(k));
        self
    }
}

/// A step a caller asks for with [`crate::Ledger::transition`]. `Collected` is reached only
/// through [`crate::Ledger::store_results`], which stores the results in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `REQUEST_X` written and verified.
    RequestUploaded,
    /// `REQUEST_X` written and verified, and the gateway named the uploaded batch (APS:
    /// `batch_id`): the same step as [`Transition::RequestUploaded`], and the id is stored as
    /// [`crate::BatchRecord::gateway_batch_id`] in the same write.
    RequestUploadedAs {
        /// The gateway's id for the batch, as it sent it.
        gateway_batch_id: String,
    },
    /// `PROCESS_X` written.
    Triggered,
    /// `COMPLETE_X` seen, with its verdict (the rest of COMPLETE is not recorded).
    Completed(Verdict),
    /// `COMPLETE_X` seen, with its verdict and the rest of its fields (stored as
    /// [`crate::BatchRecord::complete_fields`]; sensitive keys dropped).
    CompletedWith(Verdict, CompleteFields),
    /// The deadline passed without a COMPLETE.
    Stuck,
    /// `RESPONSE_X` and `COMPLETE_X` deleted.
    Cleaned,
    /// An operator gives up on the batch (the gateway confirmed it never processed it).
    Abandoned {
        /// Why; kept as the batch's note.
        reason: String,
    },
    /// An operator closes a batch whose answer cannot be had; its lines stay `unknown`.
    MarkedUnknown {
        /// Why; kept as the batch's note.
        reason: String,
    },
}

impl Transition {
    /// [`Transition::CompletedWith`] for a parsed `COMPLETE_X` file: its [`Verdict`] and the
    /// rest of its fields ([`Verdict::from_complete`], [`CompleteFields::from_complete`]).
    pub fn from_complete(complete: &kvp_format::CompleteFile) -> Self {
        Transition::CompletedWith(
            Verdict::from_complete(complete),
            CompleteFields::from_complete(complete),
        )
    }

    /// Whether the step may be recorded without an fsync of its own
    /// ([`crate::Commit::Deferred`]): it can be repeated after a crash that lost it, because
    /// what it records is still there to be found again. `Triggered` (PROCESS_X is uploaded
    /// again: the gateway ignores a number it has seen), `Completed` (COMPLETE_X stays in the
    /// drop until the results are durable), `Stuck` (the deadline passes again) and `Cleaned`
    /// (deleting the answer files again is harmless). Not `RequestUploaded`: a batch whose
    /// PROCESS may have been written must never be found `Reserved` (PROTOCOL.md decision 4b),
    /// nor an operator's `Abandoned` or `MarkedUnknown`.
    pub fn can_defer(&self) -> bool {
        matches!(
            self,
            Transition::Triggered
                | Transition::Completed(_)
                | Transition::CompletedWith(..)
                | Transition::Stuck
                | Transition::Cleaned
        )
    }

    /// The state this step leads to.
    pub fn target(&self) -> BatchState {
        match self {
            Transition::RequestUploaded | Transition::RequestUploadedAs { .. } => {
                BatchState::RequestUploaded
            }
            Transition::Triggered => BatchState::Triggered,
            Transition::Completed(v) | Transition::CompletedWith(v, _) => {
                BatchState::Completed(v.outcome)
            }
            Transition::Stuck => BatchState::Stuck,
            Transition::Cleaned => BatchState::Cleaned,
            Transition::Abandoned { .. } => BatchState::Abandoned,
            Transition::MarkedUnknown { .. } => BatchState::MarkedUnknown,
        }
    }
}

/// When a batch entered a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The state entered.
    pub state: BatchState,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use BatchState::*;

    const OK: BatchOutcome = BatchOutcome::Success;
    const ERR: BatchOutcome = BatchOutcome::GatewayError;
    const ALL: [BatchState; 10] = [
        Reserved,
        RequestUploaded,
        Triggered,
        Completed(OK),
        Completed(ERR),
        Collected,
        Cleaned,
        Stuck,
        Abandoned,
        MarkedUnknown,
    ];

    #[test]
    fn the_table_is_exactly_the_documented_one() {
        #[rustfmt::skip]
        let legal: &[(BatchState, BatchState)] = &[
            (Reserved, RequestUploaded),
            (Reserved, Abandoned),
            (RequestUploaded, Triggered),
            (RequestUploaded, Abandoned),
            (Triggered, Completed(OK)),
            (Triggered, Completed(ERR)),
            (Triggered, Stuck),
            (Triggered, Abandoned),
            (Stuck, Completed(OK)),
            (Stuck, Completed(ERR)),
            (Stuck, Abandoned),
            (Completed(OK), Collected),
            (Completed(ERR), Collected),
            (Collected, Cleaned),
            (RequestUploaded, MarkedUnknown),
            (Triggered, MarkedUnknown),
            (Stuck, MarkedUnknown),
            (Completed(OK), MarkedUnknown),
            (Completed(ERR), MarkedUnknown),
            (Collected, MarkedUnknown),
        ];
        for from in ALL {
            for to in ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn final_states_have_no_way_out() {
        for from in ALL.into_iter().filter(|s| s.is_final()) {
            assert!(ALL.iter().all(|to| !from.can_become(*to)), "{from}");
        }
        assert_eq!(ALL.iter().filter(|s| s.is_final()).count(), 3);
    }

    #[test]
    fn display_and_name() {
        #[rustfmt::skip]
        let cases: &[(BatchState, &str, &str)] = &[
            (Reserved, "Reserved", "Reserved"),
            (Completed(OK), "Completed(Success)", "Completed"),
            (Completed(ERR), "Completed(GatewayError)", "Completed"),
            (Abandoned, "Abandoned", "Abandoned"),
        ];
        for (s, display, name) in cases {
            assert_eq!(s.to_string(), *display);
            assert_eq!(s.name(), *name);
        }
    }

    #[test]
    fn only_an_error_with_zero_processed_proves_nothing_processed() {
        #[rustfmt::skip]
        let cases: &[(BatchOutcome, Option<u64>, bool)] = &[
            (ERR, Some(0), true),
            (ERR, Some(3), false),
            (ERR, None, false),
            (OK, Some(0), false),
        ];
        for (outcome, count, expected) in cases {
            let v = Verdict {
                processed_count: *count,
                ..Verdict::new(*outcome, "x")
            };
            assert_eq!(
                v.proves_nothing_processed(),
                *expected,
                "{outcome:?} {count:?}"
            );
        }
    }

    const COMPLETE: &[u8] = b"xResult=A&xStatus=Success&xError=&xProcessedCount=2&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=7&xKey=batch-secret-1&xNote=hi\n";

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, x)| (k.to_string(), x.to_string()))
            .collect()
    }

    #[test]
    fn from_complete_keeps_result_and_echoes_and_drops_the_key() {
        let complete = kvp_format::CompleteFile::parse(COMPLETE).unwrap();
        let fields = CompleteFields::from_complete(&complete);
        assert_eq!(fields.result.as_deref(), Some("A"));
        let expected = [
            ("xSubmittedCount", "2"),
            ("xFormat", "KVP"),
            ("xSequenceNumber", "7"),
            ("xNote", "hi"),
        ];
        assert_eq!(fields.extra, pairs(&expected));
        assert!(!format!("{fields:?}").contains("batch-secret-1"));
        let Transition::CompletedWith(v, f) = Transition::from_complete(&complete) else {
            panic!("not CompletedWith")
        };
        assert_eq!((v.outcome, v.processed_count), (OK, Some(2)));
        assert_eq!(f, fields);
    }

    #[test]
    fn from_pairs_sorts_the_fields() {
        type Pairs = &'static [(&'static str, &'static str)];
        #[rustfmt::skip]
        let cases: &[(Pairs, Option<&str>, Pairs)] = &[
            (&[], None, &[]),
            (&[("xStatus", "Error"), ("xError", "bad"), ("xProcessedCount", "0")], None, &[]),
            (&[("XRESULT", "E"), ("xresult", "A"), ("xFormat", "KVP")], Some("E"), &[("xresult", "A"), ("xFormat", "KVP")]),
            (&[("xkey", "k"), ("xCardNum", "4111111111111111"), ("xB", "2"), ("xA", "1")], None, &[("xB", "2"), ("xA", "1")]),
        ];
        for (input, result, extra) in cases {
            let f = CompleteFields::from_pairs(input.iter().copied());
            assert_eq!(f.result.as_deref(), *result, "{input:?}");
            assert_eq!(f.extra, pairs(extra), "{input:?}");
        }
    }

    #[test]
    fn transition_targets() {
        let v = Verdict::new(ERR, "Error");
        assert_eq!(Transition::Completed(v).target(), Completed(ERR));
        assert_eq!(
            Transition::Abandoned { reason: "r".into() }.target(),
            Abandoned
        );
        assert_eq!(Transition::Cleaned.target(), Cleaned);
        let uploaded = Transition::RequestUploadedAs {
            gateway_batch_id: "7".into(),
        };
        assert_eq!(uploaded.target(), RequestUploaded);
        let with =
            Transition::CompletedWith(Verdict::new(OK, "Success"), CompleteFields::default());
        assert_eq!(with.target(), Completed(OK));
    }
}
