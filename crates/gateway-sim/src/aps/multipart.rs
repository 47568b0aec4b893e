//! A small `multipart/form-data` reader (RFC 7578) for the upload endpoint: enough for what
//! HTTP clients send (CRLF line ends, `Content-Disposition` with `name` and `filename`).

/// One part: its field name and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` parameter of `Content-Disposition`.
    pub name: String,
    /// The body of the part.
    pub data: Vec<u8>,
}

/// The boundary of a `multipart/form-data; boundary=...` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits `body` into parts; `None` for a body that is not well-formed.
pub fn parse(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut rest = body.strip_prefix(delimiter.as_bytes())?;
    let mut parts = Vec::new();
    let next_delimiter = format!("\r\n--{boundary}");
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let header_end = find(rest, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(rest.get(..header_end)?).ok()?;
        let name = headers.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (pk, pv) = p.split_once('=')?;
                (pk.trim() == "name").then(|| pv.trim().trim_matches('"').to_owned())
            })
        })?;
        let content = rest.get(header_end + 4..)?;
        let end = find(content, next_delimiter.as_bytes())?;
        parts.push(Part {
            name,
            data: content.get(..end)?.to_vec(),
        });
        rest = content.get(end + next_delimiter.len()..)?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        let cases: &[(&str, Option<&str>)] = &[
            ("multipart/form-data; boundary=abc", Some("abc")),
            (
                "Multipart/Form-Data; charset=utf-8; boundary=\"a b\"",
                Some("a b"),
            ),
            ("application/json", None),
            ("multipart/form-data", None),
        ];
        for (ct, b) in cases {
            assert_eq!(boundary(ct).as_deref(), *b, "{ct}");
        }
    }

    #[test]
    fn parts() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
            --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\nContent-Type: text/csv\r\n\r\nh\r\nv\r\n\r\n--B--\r\n";
        let parts = parse(body, "B").unwrap();
        assert_eq!(
            parts,
            vec![
                Part {
                    name: "a".into(),
                    data: b"1".to_vec()
                },
                Part {
                    name: "file".into(),
                    data: b"h\r\nv\r\n".to_vec()
                },
            ]
        );
        assert_eq!(parse(b"--B\r\nno headers end", "B"), None);
        assert_eq!(parse(b"garbage", "B"), None);
    }
}
