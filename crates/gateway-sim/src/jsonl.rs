//! Append-only JSON-lines files (the journal, the vault): read tolerating a torn last line,
//! repair that tail before appending again, append with one fsync per call.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Reads every line of `path` as a `T` (a missing file is empty).
///
/// A torn last line (a write cut short by a crash, before the fsync that would have made it
/// count) is ignored; a bad line anywhere else is an [`Error::Journal`].
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for_each(path, |v| out.push(v))?;
    Ok(out)
}

/// [`read`] without holding the items: hands each to `f` in file order.
pub(crate) fn for_each<T: DeserializeOwned>(path: &Path, mut f: impl FnMut(T)) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::state(path, "open", e)),
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::with_capacity(512);
    let mut number = 0u64;
    // A bad line is only an error once another line follows it.
    let mut bad: Option<(u64, serde_json::Error)> = None;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::state(path, "read", e))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        if let Some((line, source)) = bad.take() {
            return Err(Error::Journal {
                path: path.to_path_buf(),
                line: Some(line),
                source,
            });
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice(text) {
            Ok(v) => f(v),
            Err(e) => bad = Some((number, e)),
        }
    }
}

/// An append handle on a JSON-lines file.
#[derive(Debug)]
pub(crate) struct Appender {
    path: std::path::PathBuf,
    file: File,
}

impl Appender {
    /// Opens `path` for appending (creating it), first cutting a torn last line.
    pub(crate) fn open(path: &Path) -> Result<Appender> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::state(path, "open", e))?;
        cut_torn_tail(&file).map_err(|e| Error::state(path, "repair torn tail", e))?;
        Ok(Appender {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one line per item, then fsyncs: when this returns, they survive a crash.
    pub(crate) fn append<T: Serialize>(&mut self, items: &[T]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(items.len() * 256);
        for item in items {
            serde_json::to_writer(&mut buf, item).map_err(|source| Error::Journal {
                path: self.path.clone(),
                line: None,
                source,
            })?;
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::state(&self.path, "append", e))
    }
}

impl Appender {
    /// Appends `lines` (complete JSON lines, each with its LF, already encoded), then fsyncs:
    /// one write and one `fdatasync` however many lines.
    pub(crate) fn append_encoded(&mut self, lines: &[u8]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(lines)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::state(&self.path, "append", e))
    }
}

/// Drops a partial last line so later appends start on a line of their own.
fn cut_torn_tail(file: &File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut f = file;
    let mut pos = len;
    let mut buf = [0u8; 4096];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let n = usize::try_from(pos - start).unwrap_or(buf.len());
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep != len {
                file.set_len(keep)?;
                file.sync_data()?;
            }
            return Ok(());
        }
        pos = start;
    }
    if len > 0 {
        file.set_len(0)?;
        file.sync_data()?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically and durably: temporary file, fsync, rename, fsync of
/// the directory. After a crash the file holds either the old or the new content.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(|e| Error::state(&tmp, "create", e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::state(&tmp, "write", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::state(path, "rename into place", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::state(dir, "sync directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_ignored_on_read_and_cut_before_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        assert!(read::<u32>(&p).unwrap().is_empty());
        std::fs::write(&p, "1\n2\n{\"tor").unwrap();
        assert_eq!(read::<u32>(&p).unwrap(), vec![1, 2]);
        Appender::open(&p).unwrap().append(&[3u32]).unwrap();
        assert_eq!(read::<u32>(&p).unwrap(), vec![1, 2, 3]);
        std::fs::write(&p, "{\"torn").unwrap();
        Appender::open(&p).unwrap().append(&[4u32]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "4\n");
        std::fs::write(&p, b"1\n\"\xC3").unwrap(); // cut inside a UTF-8 character
        assert_eq!(read::<u32>(&p).unwrap(), vec![1]);
    }

    #[test]
    fn bad_middle_line_is_an_error_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "1\n{bad\n3\n").unwrap();
        let err = read::<u32>(&p).unwrap_err();
        assert!(matches!(err, Error::Journal { line: Some(2), .. }), "{err}");
    }

    #[test]
    fn write_durably_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n");
        write_durably(&p, b"1").unwrap();
        write_durably(&p, b"22").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"22");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
