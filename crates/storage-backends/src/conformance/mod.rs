//! The conformance suite: one set of `async fn`s over `&dyn Backend` that every backend —
//! local, S3, SFTP, or a future one, or a test double — must pass. Backends differ only by
//! their declared [`Capabilities`](crate::Capabilities), never by hand-picked test lists.
//!
//! Each case works in its own sub-folder named after the case, so cases can run concurrently
//! on one backend. A case returns `Err(Failure)` with what went wrong instead of panicking, so
//! the caller decides how to report it:
//!
//! ```no_run
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! use storage_backends::{conformance, open, test_env};
//! let target = test_env::local()?;
//! let backend = open(&target.location, &target.options).await?;
//! conformance::round_trip(&*backend).await?;
//! for (name, result) in conformance::run_quick(&*backend).await {
//!     result.map_err(|f| format!("{name}: {f}"))?;
//! }
//! # Ok(()) }
//! ```
//!
//! The two heavy cases take their size as an argument: [`large_streamed`] (the required run
//! uses [`LARGE_FILE_BYTES`], 200 MB, and checks memory stays flat) and [`many_files`]
//! (required: [`MANY_FILES`], 10,000 files, created with bounded concurrency).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Backend, ByteStream, PutIfAbsent, Replace};
use crate::error::{Error, ErrorKind};

mod heavy;

pub use heavy::{large_streamed, many_files, pattern_stream};

/// Size of the required large-file case (200 MB).
pub const LARGE_FILE_BYTES: u64 = 200 * 1000 * 1000;
/// Number of files of the required listing case.
pub const MANY_FILES: usize = 10_000;
/// How much the process's resident memory may grow while streaming the large file.
pub const MAX_STREAM_MEMORY_GROWTH: u64 = 64 * 1024 * 1024;

/// Why a case failed.
#[derive(Debug)]
pub struct Failure {
    /// What was expected and what happened.
    pub message: String,
    /// The backend error behind it, if any.
    pub error: Option<Error>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(e) => write!(f, "{}: {e}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.as_ref().map(|e| e as _)
    }
}

/// The result of one case.
pub type CaseResult = std::result::Result<(), Failure>;

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        error: None,
    }
}

/// Attaches context to a backend error.
trait Context<T> {
    fn ctx(self, what: &str) -> std::result::Result<T, Failure>;
}

impl<T> Context<T> for crate::Result<T> {
    fn ctx(self, what: &str) -> std::result::Result<T, Failure> {
        self.map_err(|e| Failure {
            message: what.to_owned(),
            error: Some(e),
        })
    }
}

/// The paths `list(prefix)` returns, in its order.
async fn paths(
    b: &dyn Backend,
    prefix: &str,
    what: &str,
) -> std::result::Result<Vec<String>, Failure> {
    let listed = b.list(prefix).await.ctx(what)?;
    Ok(listed.into_iter().map(|m| m.path).collect())
}

fn check(cond: bool, message: impl FnOnce() -> String) -> CaseResult {
    if cond { Ok(()) } else { Err(fail(message())) }
}

fn expect_kind<T: fmt::Debug>(r: crate::Result<T>, kind: ErrorKind, what: &str) -> CaseResult {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(Failure {
            message: format!("{what}: expected {kind}, got another error"),
            error: Some(e),
        }),
        Ok(v) => Err(fail(format!("{what}: expected {kind}, got Ok({v:?})"))),
    }
}

/// put → get → head → list → delete → get is `NotFound`.
pub async fn round_trip(b: &dyn Backend) -> CaseResult {
    let path = "round_trip/Request/REQUEST_1.KVP";
    let data = Bytes::from_static(b"xIndex=0&xSequenceNumber=1\n");
    b.put(path, data.clone()).await.ctx("put")?;
    check(b.get(path).await.ctx("get")? == data, || {
        "get returned other bytes".into()
    })?;
    let meta = b.head(path).await.ctx("head")?;
    check(meta.path == path && meta.size == data.len() as u64, || {
        format!("head: {meta:?}")
    })?;
    if b.capabilities().modified_time {
        check(meta.modified.is_some(), || {
            "head: no modification time".into()
        })?;
    }
    let listed = b.list("round_trip/Request").await.ctx("list")?;
    check(
        listed.len() == 1 && listed[0].path == path && listed[0].size == meta.size,
        || format!("list: {listed:?}"),
    )?;
    b.delete(path).await.ctx("delete")?;
    expect_kind(b.get(path).await, ErrorKind::NotFound, "get after delete")?;
    let listed = b
        .list("round_trip/Request")
        .await
        .ctx("list after delete")?;
    check(listed.is_empty(), || {
        format!("list after delete: {listed:?}")
    })
}

/// A second `put` replaces the first; empty files work.
pub async fn overwrite(b: &dyn Backend) -> CaseResult {
    let path = "overwrite/a.txt";
    b.put(path, Bytes::from_static(b"first, longer"))
        .await
        .ctx("put 1")?;
    b.put(path, Bytes::from_static(b"second"))
        .await
        .ctx("put 2")?;
    check(b.get(path).await.ctx("get")?.as_ref() == b"second", || {
        "not replaced".into()
    })?;
    b.put(path, Bytes::new()).await.ctx("put empty")?;
    check(b.get(path).await.ctx("get empty")?.is_empty(), || {
        "empty file not empty".into()
    })?;
    check(b.head(path).await.ctx("head")?.size == 0, || {
        "empty file size".into()
    })
}

/// `put_if_absent` on a taken name is `AlreadyExists` and leaves the content alone.
pub async fn put_if_absent_conflict(b: &dyn Backend) -> CaseResult {
    let path = "put_if_absent/PROCESS_1.KVP";
    if b.capabilities().put_if_absent == PutIfAbsent::Unsupported {
        return expect_kind(
            b.put_if_absent(path, Bytes::new()).await,
            ErrorKind::Config,
            "unsupported",
        );
    }
    b.put_if_absent(path, Bytes::from_static(b"one"))
        .await
        .ctx("first put_if_absent")?;
    expect_kind(
        b.put_if_absent(path, Bytes::from_static(b"two")).await,
        ErrorKind::AlreadyExists,
        "second put_if_absent",
    )?;
    check(b.get(path).await.ctx("get")?.as_ref() == b"one", || {
        "content changed".into()
    })?;
    // Also against a file written by a plain put.
    b.put("put_if_absent/b", Bytes::from_static(b"x"))
        .await
        .ctx("put")?;
    expect_kind(
        b.put_if_absent("put_if_absent/b", Bytes::from_static(b"y"))
            .await,
        ErrorKind::AlreadyExists,
        "put_if_absent over put",
    )
}

/// Of 8 concurrent `put_if_absent`s to one name exactly one wins, and its bytes are what is
/// stored.
pub async fn put_if_absent_race(b: Arc<dyn Backend>) -> CaseResult {
    if b.capabilities().put_if_absent != PutIfAbsent::Atomic {
        return Ok(());
    }
    let path = "put_if_absent_race/REQUEST_7.KVP";
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u8 {
        let b = b.clone();
        tasks.spawn(async move {
            let data = Bytes::from(vec![i; 64 * 1024]);
            (i, b.put_if_absent(path, data).await)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, r) = joined.map_err(|e| fail(format!("task failed: {e}")))?;
        match r {
            Ok(()) => winners.push(i),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Failure {
                    message: format!("writer {i}"),
                    error: Some(e),
                });
            }
        }
    }
    check(winners.len() == 1, || format!("winners: {winners:?}"))?;
    let stored = b.get(path).await.ctx("get")?;
    check(
        stored.iter().all(|&x| x == winners[0]) && stored.len() == 64 * 1024,
        || "stored bytes are not the winner's".into(),
    )
}

/// While one task keeps replacing a file with one of two large contents, another keeps
/// reading it: every read is one whole content (or, only for `Replace::RemoveThenRename`,
/// `NotFound`), never a mix or a prefix.
pub async fn atomic_publish(b: Arc<dyn Backend>) -> CaseResult {
    let path = "atomic_publish/REQUEST_9.KVP";
    let a = Bytes::from(vec![b'a'; 1024 * 1024]);
    let z = Bytes::from(vec![b'z'; 3 * 1024 * 1024 / 2]);
    b.put(path, a.clone()).await.ctx("first put")?;
    let may_vanish = b.capabilities().replace == Replace::RemoveThenRename;
    let writer = {
        let (b, a, z) = (b.clone(), a.clone(), z.clone());
        tokio::spawn(async move {
            for i in 0..12 {
                let data = if i % 2 == 0 { z.clone() } else { a.clone() };
                b.put(path, data).await?;
            }
            Ok::<(), Error>(())
        })
    };
    let mut reads = 0u32;
    while !writer.is_finished() || reads < 3 {
        match b.get(path).await {
            Ok(got) => {
                reads += 1;
                check(got == a || got == z, || {
                    format!(
                        "read {reads} saw a partial or mixed file of {} bytes",
                        got.len()
                    )
                })?;
            }
            Err(e) if may_vanish && e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Failure {
                    message: "concurrent get".into(),
                    error: Some(e),
                });
            }
        }
    }
    writer
        .await
        .map_err(|e| fail(format!("writer task: {e}")))?
        .ctx("writer")?;
    // A streamed upload is invisible until it is complete.
    let streamed = "atomic_publish/streamed.KVP";
    let (tx, rx) = futures::channel::mpsc::channel::<crate::Result<Bytes>>(1);
    let upload = {
        let b = b.clone();
        tokio::spawn(async move { b.put_stream(streamed, rx.boxed()).await })
    };
    let mut tx = tx;
    for _ in 0..4 {
        futures::SinkExt::send(&mut tx, Ok(Bytes::from(vec![b'q'; 256 * 1024])))
            .await
            .map_err(|e| fail(format!("feeding the upload: {e}")))?;
        expect_kind(
            b.head(streamed).await,
            ErrorKind::NotFound,
            "head during a streamed put",
        )?;
    }
    drop(tx);
    let n = upload
        .await
        .map_err(|e| fail(format!("upload task: {e}")))?
        .ctx("streamed put")?;
    check(n == 1024 * 1024, || format!("streamed {n} bytes"))?;
    check(b.head(streamed).await.ctx("head after")?.size == n, || {
        "size after".into()
    })
}

/// Missing files are `NotFound` for get, head and get_stream; the error names the file.
pub async fn missing_is_not_found(b: &dyn Backend) -> CaseResult {
    let path = "missing/Response/COMPLETE_404.KVP";
    expect_kind(b.get(path).await, ErrorKind::NotFound, "get")?;
    expect_kind(b.head(path).await, ErrorKind::NotFound, "head")?;
    match b.get_stream(path).await {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Failure {
                message: "get_stream".into(),
                error: Some(e),
            });
        }
        Ok(_) => return Err(fail("get_stream of a missing file succeeded")),
    }
    let listed = b
        .list("missing/no/such/folder")
        .await
        .ctx("list of a missing folder")?;
    check(listed.is_empty(), || {
        format!("list of a missing folder: {listed:?}")
    })
}

/// Every error names the location and the path it was about.
pub async fn errors_carry_location(b: &dyn Backend) -> CaseResult {
    let path = "errors/Response/RESPONSE_5.KVP";
    let err = match b.get(path).await {
        Err(e) => e,
        Ok(_) => return Err(fail("get of a missing file succeeded")),
    };
    let want = b.location().display_path(path);
    check(err.location() == want, || {
        format!("error location {:?}, want {want:?}", err.location())
    })?;
    check(err.to_string().contains(&want), || {
        format!("message lacks location: {err}")
    })?;
    let bad = b.get("../escape").await;
    expect_kind(bad, ErrorKind::Config, "a path with '..'")
}

/// Names with spaces and non-ASCII characters round-trip and list as written.
pub async fn unusual_names(b: &dyn Backend) -> CaseResult {
    let names = [
        "names/with space.KVP",
        "names/ünïcödé €.txt",
        "names/名前 ファイル.kvp",
        "names/sub dir ä/x.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        b.put(name, Bytes::from(format!("{i}"))).await.ctx(name)?;
    }
    for (i, name) in names.iter().enumerate() {
        let got = b.get(name).await.ctx(name)?;
        check(got == format!("{i}").as_bytes(), || {
            format!("{name}: wrong content")
        })?;
    }
    let listed = paths(b, "names", "list").await?;
    let want = &names[..3];
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    check(listed == want, || {
        format!("list: {listed:?}, want {want:?}")
    })?;
    let sub = paths(b, "names/sub dir ä", "list sub").await?;
    check(sub == [names[3]], || format!("list sub: {sub:?}"))
}

/// Deleting twice is fine; a deleted file is gone.
pub async fn delete_twice(b: &dyn Backend) -> CaseResult {
    let path = "delete_twice/Response/COMPLETE_3.KVP";
    b.put(path, Bytes::from_static(b"xStatus=Success\n"))
        .await
        .ctx("put")?;
    b.delete(path).await.ctx("first delete")?;
    b.delete(path).await.ctx("second delete")?;
    b.delete("delete_twice/never/existed")
        .await
        .ctx("delete of a never-existing file")?;
    expect_kind(b.head(path).await, ErrorKind::NotFound, "head after delete")
}

/// `list` shows direct children only, sorted, files only, and no temporaries.
pub async fn list_semantics(b: &dyn Backend) -> CaseResult {
    for p in [
        "list/Request/B.KVP",
        "list/Request/A.KVP",
        "list/Request/deeper/C.KVP",
        "list/top.txt",
    ] {
        b.put(p, Bytes::from_static(b"1")).await.ctx(p)?;
    }
    let listed = paths(b, "list/Request", "list").await?;
    check(
        listed == ["list/Request/A.KVP", "list/Request/B.KVP"],
        || format!("list: {listed:?}"),
    )?;
    let top = paths(b, "list", "list top").await?;
    check(top == ["list/top.txt"], || format!("list top: {top:?}"))
}

/// A stream that fails midway leaves no file behind and the old content in place.
pub async fn failed_stream_leaves_nothing(b: &dyn Backend) -> CaseResult {
    let path = "failed_stream/REQUEST_2.KVP";
    let broken = |loc: String| -> ByteStream {
        futures::stream::iter(vec![
            Ok(Bytes::from(vec![b'x'; 300 * 1024])),
            Err(Error::new(ErrorKind::Other, loc, "the source broke", None)),
        ])
        .boxed()
    };
    let r = b
        .put_stream(path, broken(b.location().display_path(path)))
        .await;
    check(r.is_err(), || {
        "put_stream of a broken stream succeeded".into()
    })?;
    expect_kind(
        b.head(path).await,
        ErrorKind::NotFound,
        "head after a broken stream",
    )?;
    b.put(path, Bytes::from_static(b"old")).await.ctx("put")?;
    let r = b
        .put_stream(path, broken(b.location().display_path(path)))
        .await;
    check(r.is_err(), || "second broken put_stream succeeded".into())?;
    check(b.get(path).await.ctx("get")?.as_ref() == b"old", || {
        "old content lost".into()
    })?;
    let listed = b.list("failed_stream").await.ctx("list")?;
    check(listed.len() == 1, || {
        format!("leftovers listed: {listed:?}")
    })
}

/// An upload interrupted midway (its future dropped while the data is still coming, as a
/// killed process or a cancelled call leaves it) leaves nothing a listing shows, and
/// `remove_unpublished` then removes what it left beside the file — on a backend that
/// publishes through temporary files, that one file; none on the others — without touching the file itself or
/// a neighbour whose name starts the same way; a second call finds nothing.
pub async fn unpublished_leftovers(b: &dyn Backend) -> CaseResult {
    let path = "unpublished/REQUEST_3.KVP";
    let neighbour = "unpublished/REQUEST_33.KVP";
    b.put(path, Bytes::from_static(b"old")).await.ctx("put")?;
    b.put(neighbour, Bytes::from_static(b"neighbour"))
        .await
        .ctx("put neighbour")?;
    // Two chunks, then nothing more for ever; asked for a third, the upload has written
    // the first (it has a temporary file by then), and the stream says so.
    let asked_for_more = Arc::new(tokio::sync::Notify::new());
    let mut served = 0;
    let signal = asked_for_more.clone();
    let stalled: ByteStream = futures::stream::poll_fn(move |_| {
        served += 1;
        if served <= 2 {
            std::task::Poll::Ready(Some(Ok(Bytes::from(vec![b'x'; 64 * 1024]))))
        } else {
            signal.notify_one();
            std::task::Poll::Pending
        }
    })
    .boxed();
    let upload = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        tokio::select! {
            r = b.put_stream(path, stalled) => Some(r),
            () = asked_for_more.notified() => None,
        }
    })
    .await;
    check(matches!(upload, Ok(None)), || {
        format!("the stalled upload did not stall: {upload:?}")
    })?;
    let listed = paths(b, "unpublished", "list").await?;
    check(listed == [path, neighbour], || {
        format!("listed after the interrupted upload: {listed:?}")
    })?;
    let removed = b.remove_unpublished(path).await.ctx("remove_unpublished")?;
    // Exactly the one temporary file of the one interrupted upload; nothing on a backend
    // that writes none (S3: an interrupted multipart upload is no object, see its docs).
    let expected = usize::from(b.capabilities().large_upload == crate::LargeUpload::TempFileRename);
    check(removed == expected, || {
        format!("removed {removed} file(s) after one interrupted upload, expected {expected}")
    })?;
    let again = b
        .remove_unpublished(path)
        .await
        .ctx("remove_unpublished again")?;
    check(again == 0, || format!("a second call removed {again}"))?;
    check(b.get(path).await.ctx("get")?.as_ref() == b"old", || {
        "the published file changed".into()
    })?;
    check(
        b.get(neighbour).await.ctx("get neighbour")?.as_ref() == b"neighbour",
        || "the neighbour changed".into(),
    )?;
    check(
        b.remove_unpublished("unpublished/none_here")
            .await
            .ctx("missing")?
            == 0,
        || "removed something for a name never written".into(),
    )
}

/// `put_file` uploads a local file, `get_to_file` downloads it, `exists` sees it; a missing
/// local file is reported against its local path.
pub async fn file_helpers(b: &dyn Backend) -> CaseResult {
    use crate::backend::BackendExt;
    let dir = tempfile::tempdir().map_err(|e| fail(format!("tempdir: {e}")))?;
    let local = dir.path().join("REQUEST_3.KVP");
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &content).map_err(|e| fail(format!("write local: {e}")))?;
    let path = "files/Request/REQUEST_3.KVP";
    check(!b.exists(path).await.ctx("exists before")?, || {
        "exists before put".into()
    })?;
    let n = b.put_file(path, &local).await.ctx("put_file")?;
    check(n == content.len() as u64, || format!("put_file wrote {n}"))?;
    check(b.exists(path).await.ctx("exists after")?, || {
        "not there after put_file".into()
    })?;
    let back = dir.path().join("back.KVP");
    let m = b.get_to_file(path, &back).await.ctx("get_to_file")?;
    let read = std::fs::read(&back).map_err(|e| fail(format!("read back: {e}")))?;
    check(m == n && read == content, || {
        "downloaded bytes differ".into()
    })?;
    let missing = dir.path().join("no-such-file");
    match b.put_file("files/x", &missing).await {
        Err(e) if e.kind() == ErrorKind::NotFound && e.location().contains("no-such-file") => {
            expect_kind(
                b.head("files/x").await,
                ErrorKind::NotFound,
                "after a failed put_file",
            )
        }
        Err(e) => Err(Failure {
            message: "put_file of a missing local file".into(),
            error: Some(e),
        }),
        Ok(n) => Err(fail(format!(
            "put_file of a missing local file wrote {n} bytes"
        ))),
    }
}

/// The quick cases (all but [`put_if_absent_race`], [`atomic_publish`], [`large_streamed`] and
/// [`many_files`], which need an `Arc` or a size), by name.
pub async fn run_quick(b: &dyn Backend) -> Vec<(&'static str, CaseResult)> {
    vec![
        ("round_trip", round_trip(b).await),
        ("overwrite", overwrite(b).await),
        ("put_if_absent_conflict", put_if_absent_conflict(b).await),
        ("missing_is_not_found", missing_is_not_found(b).await),
        ("errors_carry_location", errors_carry_location(b).await),
        ("unusual_names", unusual_names(b).await),
        ("delete_twice", delete_twice(b).await),
        ("list_semantics", list_semantics(b).await),
        (
            "failed_stream_leaves_nothing",
            failed_stream_leaves_nothing(b).await,
        ),
        ("file_helpers", file_helpers(b).await),
        ("unpublished_leftovers", unpublished_leftovers(b).await),
    ]
}
