//! `GET /` on the admin listener: a read-only status page, rendered on the server (no script,
//! no build step) and refreshed by the browser every few seconds. Stuck batches first, then
//! every account with its batches by state, then the jobs with their totals.

use std::fmt::Write;

use crate::record::JobRecord;
use crate::status::Status;

/// A Stuck batch, for the page's first table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckBatch {
    /// The account.
    pub account: String,
    /// The batch.
    pub sequence: u32,
    /// How many transactions it holds.
    pub lines: u64,
    /// When it became Stuck (RFC 3339), if recorded.
    pub since: Option<String>,
}

/// What the page shows.
#[derive(Debug)]
pub struct PageData {
    /// Ready for new jobs (false while stopping).
    pub ready: bool,
    /// Per account.
    pub status: Status,
    /// Stuck batches.
    pub stuck: Vec<StuckBatch>,
    /// Every job, oldest first.
    pub jobs: Vec<JobRecord>,
    /// When the page was made (RFC 3339).
    pub now: String,
}

/// Seconds between refreshes.
pub const REFRESH_SECONDS: u32 = 5;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "—".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{}={v}", escape(k)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn numbers(list: &[u32]) -> String {
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr.stuck td{background:#fde2e1}\
.state-complete{color:#17692d}.state-failed{color:#b00020}.muted{color:#777}";

/// The page.
pub fn render(d: &PageData) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
<title>paybatch status</title><style>{STYLE}</style></head><body>\n<h1>paybatch</h1>\n\
<p id=\"service\">{} · {} accounts · {} jobs · <span class=\"muted\">as of {} (refreshed every {REFRESH_SECONDS} s)</span></p>\n",
        if d.ready {
            "ready"
        } else {
            "stopping: new jobs are refused"
        },
        d.status.accounts.len(),
        d.jobs.len(),
        escape(&d.now)
    );

    h.push_str("<h2>Stuck batches</h2>\n");
    if d.stuck.is_empty() {
        h.push_str("<p id=\"stuck-none\">None.</p>\n");
    } else {
        h.push_str(
            "<table id=\"stuck\"><tr><th>account</th><th>batch</th><th>transactions</th><th>Stuck since</th><th>what to do</th></tr>\n",
        );
        for s in &d.stuck {
            let _ = writeln!(
                h,
                "<tr class=\"stuck\"><td>{}</td><td>Stuck batch {}</td><td>{}</td><td>{}</td>\
<td>its transactions are unknown; ask the gateway, then resolve it (abandon or mark-unknown)</td></tr>",
                escape(&s.account),
                s.sequence,
                s.lines,
                escape(s.since.as_deref().unwrap_or("—"))
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str(
        "<h2>Accounts</h2>\n<table id=\"accounts\"><tr><th>account</th><th>protocol</th>\
<th>last number</th><th>batches by state</th><th>Stuck</th><th>in flight</th><th>lease</th></tr>\n",
    );
    // Accounts with a Stuck batch first, then by name.
    let mut accounts: Vec<_> = d.status.accounts.iter().collect();
    accounts.sort_by_key(|a| (a.stuck.is_empty(), a.account.clone()));
    for a in accounts {
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if a.stuck.is_empty() {
                ""
            } else {
                " class=\"stuck\""
            },
            escape(&a.account),
            escape(a.protocol.as_deref().unwrap_or("—")),
            a.last_sequence
                .map_or_else(|| "—".to_owned(), |s| s.to_string()),
            counts(&a.batches),
            numbers(&a.stuck),
            numbers(&a.in_flight),
            a.lease.as_ref().map_or_else(
                || "—".to_owned(),
                |l| escape(&format!("{} until {}", l.holder, l.until))
            ),
        );
    }
    h.push_str("</table>\n");

    h.push_str(
        "<h2>Jobs</h2>\n<table id=\"jobs\"><tr><th>job</th><th>state</th><th>created</th>\
<th>finished</th><th>transactions</th><th>totals</th><th>accounts</th></tr>\n",
    );
    for j in d.jobs.iter().rev() {
        let accounts: Vec<String> = j
            .accounts
            .iter()
            .map(|a| {
                let mut s = format!("{} ({})", escape(&a.account), a.transactions);
                if !a.stuck.is_empty() {
                    let _ = write!(s, " Stuck: {}", numbers(&a.stuck));
                }
                s
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"state-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(j.id.as_str()),
            j.state.as_str(),
            j.state.as_str(),
            escape(&j.created),
            escape(j.finished.as_deref().unwrap_or("—")),
            j.transactions,
            counts(&j.totals),
            accounts.join(", ")
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::AccountStatus;

    #[test]
    fn the_page_escapes_and_puts_stuck_first() {
        let account = |name: &str, stuck: Vec<u32>| AccountStatus {
            account: name.into(),
            protocol: Some("sola".into()),
            last_sequence: Some(3),
            batches: [("Cleaned".to_owned(), 2)].into_iter().collect(),
            stuck,
            in_flight: vec![],
            lease: None,
        };
        let d = PageData {
            ready: true,
            status: Status {
                accounts: vec![account("a<b>", vec![]), account("zed", vec![3])],
            },
            stuck: vec![StuckBatch {
                account: "zed".into(),
                sequence: 3,
                lines: 20,
                since: None,
            }],
            jobs: vec![],
            now: "2026-01-01T00:00:00Z".into(),
        };
        let html = render(&d);
        assert!(
            html.contains("a&lt;b&gt;") && !html.contains("a<b>"),
            "{html}"
        );
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("Stuck batch 3"));
        let zed = html.find("<td>zed</td><td>sola").unwrap();
        let ab = html.find("<td>a&lt;b&gt;</td>").unwrap();
        assert!(zed < ab, "the account with a Stuck batch comes first");
    }
}
