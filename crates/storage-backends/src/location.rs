//! `Location`: where an account's drop lives, as a URL, and the rules for relative paths in it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::error::{Error, Result};

/// The default SSH port, used when an `sftp://` URL names none.
pub const DEFAULT_SFTP_PORT: u16 = 22;

/// The root of an account's drop: a folder holding `Request/` and `Response/`.
///
/// Accepted forms (anything else is a [`ErrorKind::Config`](crate::ErrorKind::Config) error
/// naming the problem):
/// - `file:///srv/drop/acme`: a local directory (absolute path);
/// - `s3://bucket/prefix/acme`: a bucket and an optional key prefix;
/// - `sftp://user@host:2222/drop/acme`: an SFTP server; the URL path is **absolute on the
///   server** (this one is `/drop/acme`), the port defaults to 22, the user is required and a
///   password is refused (passwords come from an environment variable, see
///   [`SftpAuth`](crate::SftpAuth)).
///
/// Percent-escapes in the path are decoded (`%20` is a space). A trailing `/` is ignored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Location {
    target: Target,
}

/// The parsed parts of a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// A local directory.
    Local {
        /// Absolute path of the drop's root.
        root: PathBuf,
    },
    /// An S3 bucket (or S3-compatible server) and a key prefix.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing `/`; empty for the bucket's root.
        prefix: String,
    },
    /// A folder on an SFTP server.
    Sftp {
        /// Login name.
        user: String,
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
        /// Absolute path on the server, without trailing `/` (except for `/` itself).
        root: String,
    },
}

/// The scheme of a [`Location`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `file://`
    Local,
    /// `s3://`
    S3,
    /// `sftp://`
    Sftp,
}

impl Scheme {
    /// `"file"`, `"s3"` or `"sftp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Local => "file",
            Scheme::S3 => "s3",
            Scheme::Sftp => "sftp",
        }
    }
}

impl Location {
    /// Parses a location URL.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for anything but the three documented
    /// forms, with the reason (unknown scheme, relative path, missing bucket or user, a
    /// password in the URL, a query or fragment, `.`/`..` segments).
    pub fn parse(text: &str) -> Result<Location> {
        let shown = kvp_format::mask_url_password(text);
        let bad = |msg: &str| Error::config(shown.clone(), format!("invalid location: {msg}"));
        let url = Url::parse(text).map_err(|e| {
            Error::with_source(
                crate::ErrorKind::Config,
                shown.clone(),
                "invalid location: not a URL (expected file:///abs/path, s3://bucket/prefix or \
                 sftp://user@host:port/abs/path)",
                e,
            )
        })?;
        // The URL parser resolves `.` and `..` away; a location that needs them is a mistake.
        let dot = |seg: &str| {
            let seg = seg.to_ascii_lowercase().replace("%2e", ".");
            seg == "." || seg == ".."
        };
        if text.split(['/', '?', '#']).skip(3).any(dot) {
            return Err(bad("'.' and '..' path segments are not allowed"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment is not allowed"));
        }
        let segments = decode_segments(&url).map_err(|m| bad(&m))?;
        let target = match url.scheme() {
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(bad("file URLs must not name a host (use file:///abs/path)"));
                }
                let mut root = PathBuf::from("/");
                root.extend(&segments);
                Target::Local { root }
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("s3 URLs need a bucket: s3://bucket/prefix"))?;
                if url.port().is_some() || !url.username().is_empty() {
                    return Err(bad(
                        "s3 URLs take no user or port (set the endpoint in AWS_ENDPOINT_URL)",
                    ));
                }
                Target::S3 {
                    bucket: bucket.to_owned(),
                    prefix: segments.join("/"),
                }
            }
            "sftp" => {
                if url.password().is_some() {
                    return Err(bad(
                        "a password in the URL is refused; name an environment variable holding \
                         it in the SFTP options instead",
                    ));
                }
                let user = percent_decode_str(url.username())
                    .decode_utf8()
                    .map_err(|_| bad("the user name is not UTF-8"))?
                    .into_owned();
                if user.is_empty() {
                    return Err(bad("sftp URLs need a user: sftp://user@host:port/abs/path"));
                }
                let host = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("sftp URLs need a host"))?;
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                Target::Sftp {
                    user,
                    host,
                    port: url.port().unwrap_or(DEFAULT_SFTP_PORT),
                    root: format!("/{}", segments.join("/")),
                }
            }
            other => {
                return Err(bad(&format!(
                    "unsupported scheme {other:?} (use file, s3 or sftp)"
                )));
            }
        };
        Ok(Location { target })
    }

    /// Whether `self` and `other` name the same drop: the same directory, bucket prefix or
    /// login and folder on a server, whatever the spelling that parsing already evens out (a
    /// trailing `/`, percent-escapes; `.`/`..` segments are refused) and the case of an SFTP
    /// host name (host names are case-insensitive). Equal exactly when their
    /// [`drop_key`](Self::drop_key)s are.
    pub fn same_drop(&self, other: &Location) -> bool {
        self.drop_key() == other.drop_key()
    }

    /// The drop this location names, in one spelling: equal for two locations exactly when
    /// they name the same drop, so a set of locations is checked for shared drops by hashing
    /// (an SFTP host in lower case without a trailing `.`; the login is part of the place:
    /// gateways usually jail each login in a home of its own, where `/` is a different folder
    /// for every user).
    pub fn drop_key(&self) -> Target {
        match &self.target {
            Target::Sftp {
                user,
                host,
                port,
                root,
            } => Target::Sftp {
                user: user.clone(),
                host: host.trim_end_matches('.').to_ascii_lowercase(),
                port: *port,
                root: root.clone(),
            },
            other => other.clone(),
        }
    }

    /// The parsed parts.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Which kind of backend serves this location.
    pub fn scheme(&self) -> Scheme {
        match self.target {
            Target::Local { .. } => Scheme::Local,
            Target::S3 { .. } => Scheme::S3,
            Target::Sftp { .. } => Scheme::Sftp,
        }
    }

    /// A location for the sub-folder `rel` (checked like any relative path).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) if `rel` is not a valid relative path.
    pub fn child(&self, rel: &str) -> Result<Location> {
        check_path(self, rel)?;
        let target = match &self.target {
            Target::Local { root } => Target::Local {
                root: root.join(rel),
            },
            Target::S3 { bucket, prefix } => Target::S3 {
                bucket: bucket.clone(),
                prefix: join(prefix, rel),
            },
            Target::Sftp {
                user,
                host,
                port,
                root,
            } => Target::Sftp {
                user: user.clone(),
                host: host.clone(),
                port: *port,
                root: if root == "/" {
                    format!("/{rel}")
                } else {
                    format!("{root}/{rel}")
                },
            },
        };
        Ok(Location { target })
    }

    /// The human-readable URL of `rel` under this location, for messages (not escaped).
    pub fn display_path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.to_string()
        } else {
            format!("{self}/{rel}")
        }
    }
}

fn join(prefix: &str, rel: &str) -> String {
    match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}/{rel}"),
    }
}

/// The URL path's segments, percent-decoded, empty ones (from `//` or a trailing `/`) dropped.
fn decode_segments(url: &Url) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for seg in url.path().split('/') {
        if seg.is_empty() {
            continue;
        }
        let decoded = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| format!("path segment {seg:?} is not UTF-8"))?;
        if decoded == "." || decoded == ".." || decoded.contains('/') || decoded.contains('\0') {
            return Err(format!("path segment {decoded:?} is not allowed"));
        }
        out.push(decoded.into_owned());
    }
    Ok(out)
}

/// Checks a path relative to a location's root: `/`-separated, no empty, `.` or `..` segment,
/// no leading `/`, no control character or backslash. An empty string means the root itself.
///
/// # Errors
/// [`ErrorKind::Config`](crate::ErrorKind::Config) naming the path.
pub fn check_path(location: &Location, rel: &str) -> Result<()> {
    if rel.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        Error::config(
            location.display_path(rel),
            format!("invalid relative path {rel:?}: {why}"),
        )
    };
    if rel.starts_with('/') {
        return Err(bad("it must not start with '/'"));
    }
    for seg in rel.split('/') {
        match seg {
            "" => return Err(bad("empty segment (\"//\" or trailing '/')")),
            "." | ".." => return Err(bad("'.' and '..' segments are not allowed")),
            s if s.contains(|c: char| c == '\\' || c.is_ascii_control()) => {
                return Err(bad("control characters and backslashes are not allowed"));
            }
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Local { root } => write!(f, "file://{}", root.display()),
            Target::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Target::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Target::Sftp {
                user,
                host,
                port,
                root,
            } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let root = if root == "/" { "" } else { root };
                write!(f, "sftp://{user}@{host}:{port}{root}")
            }
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Location::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Target {
        Location::parse(s).unwrap().target().clone()
    }

    fn err(s: &str) -> String {
        Location::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn one_drop_one_key_whatever_the_spelling() {
        let key = |t: &str| Location::parse(t).unwrap().drop_key();
        let same = [
            ("sftp://u@Host.Example.:22/in/", "sftp://u@host.example/in"),
            ("file:///tmp/drop/", "file:///tmp/drop"),
            ("s3://bucket/a/b/", "s3://bucket/a/b"),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a} vs {b}");
            assert!(
                Location::parse(a)
                    .unwrap()
                    .same_drop(&Location::parse(b).unwrap())
            );
        }
        let different = [
            ("sftp://u@host/in", "sftp://v@host/in"),
            ("sftp://u@host:22/in", "sftp://u@host:2222/in"),
            ("file:///tmp/a", "file:///tmp/b"),
            ("s3://bucket/a", "s3://other/a"),
        ];
        for (a, b) in different {
            assert_ne!(key(a), key(b), "{a} vs {b}");
        }
    }

    #[test]
    fn parses_the_three_forms() {
        let local = |p: &str| Target::Local { root: p.into() };
        let s3 = |b: &str, p: &str| Target::S3 {
            bucket: b.into(),
            prefix: p.into(),
        };
        let sftp = |u: &str, h: &str, port, r: &str| Target::Sftp {
            user: u.into(),
            host: h.into(),
            port,
            root: r.into(),
        };
        let cases = [
            ("file:///srv/drop/acme", local("/srv/drop/acme")),
            ("file:///srv/drop/acme/", local("/srv/drop/acme")),
            ("file:///srv/my%20drop", local("/srv/my drop")),
            ("file://localhost/srv", local("/srv")),
            ("s3://bucket/prefix/acme", s3("bucket", "prefix/acme")),
            ("s3://bucket", s3("bucket", "")),
            ("s3://bucket/", s3("bucket", "")),
            (
                "sftp://user@host:2222/drop/acme",
                sftp("user", "host", 2222, "/drop/acme"),
            ),
            ("sftp://user@host/drop", sftp("user", "host", 22, "/drop")),
            ("sftp://u@127.0.0.1:22/", sftp("u", "127.0.0.1", 22, "/")),
            ("sftp://u@[::1]:2200/d", sftp("u", "::1", 2200, "/d")),
        ];
        for (text, want) in cases {
            assert_eq!(ok(text), want, "{text}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases = [
            ("/srv/drop", "not a URL"),
            ("http://x/y", "unsupported scheme \"http\""),
            ("ftp://u@x/y", "unsupported scheme"),
            ("s3:///prefix", "need a bucket"),
            ("sftp://host/drop", "need a user"),
            ("sftp://u:pw@host/drop", "password in the URL is refused"),
            ("file:///a/../b", "'.' and '..'"),
            ("s3://b/p/%2E%2E/x", "'.' and '..'"),
            ("file:///srv?x=1", "query or fragment"),
            ("file://otherhost/srv", "must not name a host"),
            ("s3://u@bucket/p", "no user or port"),
        ];
        for (text, want) in cases {
            let msg = err(text);
            assert!(msg.contains(want), "{text}: {msg}");
            assert!(msg.starts_with("configuration error"), "{text}: {msg}");
        }
    }

    #[test]
    fn password_never_in_the_error() {
        // A password with an unescaped `/`, `?` or `#` makes the URL unparsable (`:hun` reads
        // as a port): still masked whole.
        for text in [
            "sftp://u:hunter2@host/drop",
            "sftp://u:hunter2@ho st/drop",
            "sftp://u:hun/ter2@host/drop",
            "sftp://u:hun?ter2@host/drop",
            "sftp://u:hun#ter2@host/drop",
        ] {
            let msg = err(text);
            assert!(
                !msg.contains("hun") && !msg.contains("ter2") && msg.contains("u:***@"),
                "{msg}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "file:///srv/drop/acme",
            "s3://bucket/prefix/acme",
            "s3://bucket",
            "sftp://user@host:2222/drop/acme",
            "sftp://u@127.0.0.1:22",
        ] {
            let loc = Location::parse(text).unwrap();
            assert_eq!(loc.to_string(), text);
            assert_eq!(Location::parse(&loc.to_string()).unwrap(), loc);
        }
    }

    #[test]
    fn child_appends() {
        let cases = [
            ("file:///srv", "acme", "file:///srv/acme"),
            ("s3://b", "acme/x", "s3://b/acme/x"),
            ("s3://b/p", "acme", "s3://b/p/acme"),
            ("sftp://u@h:22/", "acme", "sftp://u@h:22/acme"),
            ("sftp://u@h:22/d", "acme", "sftp://u@h:22/d/acme"),
        ];
        for (base, rel, want) in cases {
            let loc = Location::parse(base).unwrap().child(rel).unwrap();
            assert_eq!(loc.to_string(), want);
        }
    }

    #[test]
    fn relative_paths() {
        let loc = Location::parse("file:///srv").unwrap();
        let cases = [
            ("", true),
            ("Request/REQUEST_1.KVP", true),
            ("a b/ü €.txt", true),
            ("/abs", false),
            ("a//b", false),
            ("a/", false),
            ("../x", false),
            ("a/./b", false),
            ("a\\b", false),
            ("a\nb", false),
            ("a\tb", false),
        ];
        for (rel, valid) in cases {
            assert_eq!(check_path(&loc, rel).is_ok(), valid, "{rel:?}");
        }
    }
}
