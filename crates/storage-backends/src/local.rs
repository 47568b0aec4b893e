//! The local-directory backend.
//!
//! Written on std/tokio fs rather than object_store's `LocalFileSystem`: that one creates files
//! with the process umask (we need 0600 from the first byte, since REQUEST files hold card
//! data) and percent-encodes names on the way to disk, which would make `list` disagree with
//! what an operator sees. The publish is the same idea as `LocalFileSystem`'s: write a temporary
//! file in the target folder, fsync, then `rename` (replace) or `hard_link` (create only, which
//! fails atomically when the name is taken), then fsync the folder.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{
    Backend, ByteStream, Capabilities, LargeUpload, ObjectMeta, PutIfAbsent, Replace, is_temp_name,
    is_temp_of, reader_stream, split_parent, temp_name,
};
use crate::error::{Error, ErrorKind, Result};
use crate::location::{Location, Target, check_path};

/// A drop in a local directory (`file:///srv/drop/acme`).
#[derive(Debug)]
pub struct LocalBackend {
    location: Location,
    root: PathBuf,
}

/// How a finished temporary file is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    Replace,
    CreateOnly,
}

impl LocalBackend {
    /// A backend for `location`, creating its root directory (mode 0700) if missing.
    ///
    /// # Errors
    /// `Config` if `location` is not a `file://` location; the error of creating the root.
    pub async fn new(location: &Location) -> Result<LocalBackend> {
        let Target::Local { root } = location.target() else {
            return Err(Error::config(
                location.to_string(),
                "the local backend needs a file:// location",
            ));
        };
        let root = root.clone();
        let shown = location.to_string();
        let dir = root.clone();
        blocking(shown.clone(), move || {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| Error::from_io(shown, "create root directory", e))
        })
        .await?;
        Ok(LocalBackend {
            location: location.clone(),
            root,
        })
    }

    fn full(&self, rel: &str) -> Result<(PathBuf, String)> {
        check_path(&self.location, rel)?;
        let path = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        Ok((path, self.location.display_path(rel)))
    }

    /// Where `rel` is written: the target, its folder, the temporary file beside it, and
    /// the name shown in errors.
    fn publish_paths(&self, rel: &str) -> Result<PublishPaths> {
        let (target, shown) = self.full(rel)?;
        if rel.is_empty() {
            return Err(Error::config(shown, "cannot write to the root itself"));
        }
        let (_, name) = split_parent(rel);
        let parent = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let temp = parent.join(temp_name(name));
        Ok(PublishPaths {
            target,
            parent,
            temp,
            shown,
        })
    }

    /// Writes `data` to a temporary file next to `rel` and publishes it, all in one trip to
    /// the blocking pool.
    async fn write_bytes(&self, rel: &str, data: Bytes, how: Publish) -> Result<()> {
        let paths = self.publish_paths(rel)?;
        blocking(paths.shown.clone(), move || {
            let written = paths.create_temp().and_then(|mut file| {
                file.write_all(&data)
                    .map_err(|e| Error::from_io(paths.shown.clone(), "write temporary file", e))?;
                paths.publish(file, how)
            });
            if written.is_err() {
                let _ = std::fs::remove_file(&paths.temp);
            }
            written
        })
        .await
    }

    /// Streams `data` into a temporary file next to `rel`, then publishes it.
    async fn write_publish(&self, rel: &str, mut data: ByteStream, how: Publish) -> Result<u64> {
        let paths = std::sync::Arc::new(self.publish_paths(rel)?);
        let shown = paths.shown.clone();
        let p = paths.clone();
        let mut file = blocking(shown.clone(), move || p.create_temp()).await?;
        let result = async {
            let mut total = 0u64;
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                total += chunk.len() as u64;
                let s = shown.clone();
                file = blocking(shown.clone(), move || {
                    file.write_all(&chunk)
                        .map_err(|e| Error::from_io(s, "write temporary file", e))?;
                    Ok(file)
                })
                .await?;
            }
            let p = paths.clone();
            blocking(shown.clone(), move || p.publish(file, how)).await?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&paths.temp).await;
        }
        result
    }
}

/// The paths of one publish ([`LocalBackend::publish_paths`]).
#[derive(Debug)]
struct PublishPaths {
    target: PathBuf,
    parent: PathBuf,
    temp: PathBuf,
    shown: String,
}

impl PublishPaths {
    /// The folder (0700) and a new temporary file in it (0600 from the first byte).
    fn create_temp(&self) -> Result<std::fs::File> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.parent)
            .map_err(|e| Error::from_io(self.shown.clone(), "create folder", e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.temp)
            .map_err(|e| Error::from_io(self.shown.clone(), "create temporary file", e))
    }

    /// fsync the file, publish it under the target name, fsync the folder.
    fn publish(&self, file: std::fs::File, how: Publish) -> Result<()> {
        let s = &self.shown;
        file.sync_all()
            .map_err(|e| Error::from_io(s.clone(), "fsync temporary file", e))?;
        drop(file);
        match how {
            Publish::Replace => std::fs::rename(&self.temp, &self.target)
                .map_err(|e| Error::from_io(s.clone(), "rename into place", e))?,
            Publish::CreateOnly => {
                std::fs::hard_link(&self.temp, &self.target)
                    .map_err(|e| Error::from_io(s.clone(), "publish (name must be free)", e))?;
                // The published name holds the data now; the temporary link is only clutter,
                // so failing to remove it is not an error of the put.
                let _ = std::fs::remove_file(&self.temp);
            }
        }
        sync_dir(&self.parent, s)
    }
}

/// The files of `full` (the folder `folder` of the drop), by path; none when it is missing.
fn list_dir(full: &Path, folder: &str, shown: &str) -> Result<Vec<ObjectMeta>> {
    let dir = match std::fs::read_dir(full) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from_io(shown, "list", e)),
    };
    let mut out = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| Error::from_io(shown, "list", e))?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(folder = %shown, "skipping a file name that is not UTF-8");
            continue;
        };
        if is_temp_name(&name) {
            continue;
        }
        let md = match entry.metadata() {
            Ok(md) => md,
            // Deleted between readdir and stat: it is simply not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::from_io(shown, "stat", e)),
        };
        if !md.is_file() {
            continue;
        }
        let rel = if folder.is_empty() {
            name
        } else {
            format!("{folder}/{name}")
        };
        out.push(meta_of(rel, &md));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// fsync a directory so a rename in it survives a crash.
fn sync_dir(dir: &Path, shown: &str) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::from_io(shown, "fsync folder", e))
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T, F>(shown: String, f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::with_source(ErrorKind::Other, shown, "file-system task failed", e))?
}

fn meta_of(rel: String, md: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        path: rel,
        size: md.len(),
        modified: md.modified().ok(),
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn location(&self) -> &Location {
        &self.location
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            put_if_absent: PutIfAbsent::Atomic,
            replace: Replace::Atomic,
            large_upload: LargeUpload::TempFileRename,
            modified_time: true,
            owner_only_files: true,
        }
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.write_bytes(path, data, Publish::Replace).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<()> {
        self.write_bytes(path, data, Publish::CreateOnly).await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let (full, shown) = self.full(path)?;
        let data = tokio::fs::read(&full)
            .await
            .map_err(|e| Error::from_io(shown, "read", e))?;
        Ok(Bytes::from(data))
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        let (full, shown) = self.full(path)?;
        let md = tokio::fs::metadata(&full)
            .await
            .map_err(|e| Error::from_io(shown.clone(), "stat", e))?;
        if !md.is_file() {
            return Err(Error::new(ErrorKind::NotFound, shown, "not a file", None));
        }
        Ok(meta_of(path.to_owned(), &md))
    }

    async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>> {
        let (full, shown) = self.full(folder)?;
        let folder = folder.to_owned();
        // One trip to the blocking pool for the whole listing, not one per entry.
        blocking(shown.clone(), move || list_dir(&full, &folder, &shown)).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (full, shown) = self.full(path)?;
        match tokio::fs::remove_file(&full).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::from_io(shown, "delete", e)),
        }
    }

    async fn remove_unpublished(&self, path: &str) -> Result<usize> {
        let paths = self.publish_paths(path)?;
        blocking(paths.shown.clone(), move || {
            let Some(target) = paths.target.file_name().and_then(|n| n.to_str()) else {
                return Ok(0);
            };
            let dir = match std::fs::read_dir(&paths.parent) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::from_io(paths.shown, "list", e)),
            };
            let mut removed = 0;
            for entry in dir {
                let entry = entry.map_err(|e| Error::from_io(paths.shown.clone(), "list", e))?;
                let name = entry.file_name();
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                if is_file && name.to_str().is_some_and(|n| is_temp_of(n, target)) {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(Error::from_io(paths.shown, "delete temporary file", e));
                        }
                    }
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn get_stream(&self, path: &str) -> Result<ByteStream> {
        let (full, shown) = self.full(path)?;
        let file = tokio::fs::File::open(&full)
            .await
            .map_err(|e| Error::from_io(shown.clone(), "open", e))?;
        Ok(reader_stream(file, shown))
    }

    async fn put_stream(&self, path: &str, data: ByteStream) -> Result<u64> {
        self.write_publish(path, data, Publish::Replace).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    async fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/drop", dir.path().display());
        let b = LocalBackend::new(&Location::parse(&url).unwrap())
            .await
            .unwrap();
        (dir, b)
    }

    #[tokio::test]
    async fn files_are_owner_only_and_temp_files_are_gone() {
        let (dir, b) = backend().await;
        b.put("Request/REQUEST_1.KVP", Bytes::from_static(b"a=1\n"))
            .await
            .unwrap();
        b.put_if_absent("Request/PROCESS_1.KVP", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let folder = dir.path().join("drop/Request");
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["PROCESS_1.KVP", "REQUEST_1.KVP"]);
        for name in names {
            let mode = std::fs::metadata(folder.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn failed_stream_leaves_old_file_and_no_temp() {
        let (dir, b) = backend().await;
        b.put("a.txt", Bytes::from_static(b"old")).await.unwrap();
        let bad: ByteStream = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"new")),
            Err(Error::new(ErrorKind::Other, "src", "source broke", None)),
        ])
        .boxed();
        let err = b.put_stream("a.txt", bad).await.unwrap_err();
        assert_eq!(err.message(), "source broke");
        assert_eq!(b.get("a.txt").await.unwrap(), Bytes::from_static(b"old"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("drop")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn temp_files_are_not_listed() {
        let (dir, b) = backend().await;
        std::fs::write(dir.path().join("drop").join(temp_name("x")), b"partial").unwrap();
        b.put("x", Bytes::from_static(b"whole")).await.unwrap();
        let listed: Vec<String> = b
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path)
            .collect();
        assert_eq!(listed, ["x"]);
    }

    #[tokio::test]
    async fn wrong_scheme_is_config() {
        let err = LocalBackend::new(&Location::parse("s3://b/p").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
