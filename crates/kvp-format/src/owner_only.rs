//! Files and folders only their owner can use: folders 0700, files 0600, whatever the umask.
//!
//! Everything paybatch writes locally that holds transaction data or a secret goes through
//! here: the ledger directory and its files (bindings, stored results with tokens and
//! authorisation codes), merged outputs, summaries, rejects files, dry-run files, spill files,
//! and the demo's workspace and config (which holds keys). The usual umask (022) would make
//! them world-readable; a mode given at creation can only be narrowed by the umask, and the
//! functions below also set it explicitly, so the result is exactly 0700/0600.
//!
//! Folders paybatch is merely given (the parent of an output file, `/tmp`) are never changed:
//! only the folders it creates, and those that are its own ([`private_dir`]).
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use std::io::Write;
//! use std::os::unix::fs::PermissionsExt;
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("results.csv");
//! kvp_format::owner_only::create(&out)?.write_all(b"ref,outcome\n")?;
//! assert_eq!(std::fs::metadata(&out)?.permissions().mode() & 0o777, 0o600);
//! # Ok(())
//! # }
//! ```

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every folder paybatch creates.
pub const DIR_MODE: u32 = 0o700;

/// The mode of every file paybatch creates.
pub const FILE_MODE: u32 = 0o600;

/// Permissions 0700, for folders made by other means (`tempfile::Builder::permissions`: a
/// temporary folder is otherwise created with the umask's default, usually 0755).
pub fn dir_permissions() -> Permissions {
    Permissions::from_mode(DIR_MODE)
}

/// `OpenOptions` whose files are created with mode 0600 (the umask can only narrow it). Set
/// the access and creation flags as usual; prefer [`create`] or [`create_new`], which also
/// narrow an existing file.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Sets an open file's mode to exactly 0600.
///
/// # Errors
/// The error of `fchmod`.
pub fn restrict(file: &File) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(FILE_MODE))
}

/// Creates (or truncates) `path` for writing, owner-only; a file that was already there is
/// narrowed to 0600 as well.
///
/// # Errors
/// The error of opening or of setting the mode.
pub fn create(path: &Path) -> io::Result<File> {
    let file = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Creates `path`, which must not exist yet, for reading and writing, owner-only (spill files).
///
/// # Errors
/// `AlreadyExists` when it exists; the error of opening or of setting the mode.
pub fn create_new(path: &Path) -> io::Result<File> {
    let file = options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// Writes `contents` to `path` (created or truncated), owner-only: `std::fs::write` with mode
/// 0600.
///
/// # Errors
/// As [`create`], and the error of writing.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    create(path)?.write_all(contents.as_ref())
}

/// Creates `path` and its missing parents, each with mode 0700. Folders that already exist
/// are left as they are (they may be shared ones, like the folder an output goes to).
///
/// # Errors
/// The error of creating a folder or of setting its mode.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing.push(p.to_path_buf());
        at = p.parent();
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    // The umask may have narrowed the mode further; make it exactly 0700.
    for dir in missing {
        std::fs::set_permissions(&dir, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// A folder that is paybatch's own (the ledger, a dry-run folder of one account, the demo
/// workspace): created as by [`create_dir_all`], and set to 0700 when it already existed with a
/// wider mode.
///
/// # Errors
/// As [`create_dir_all`]; the error of setting the mode.
pub fn private_dir(path: &Path) -> io::Result<()> {
    create_dir_all(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// Makes `dir` and everything under it owner-only: folders 0700, files 0600. Symbolic links
/// are neither followed nor changed. For a folder whose files another library creates with the
/// default mode (the ledger's sled database).
///
/// # Errors
/// The error of reading a folder or of setting a mode.
pub fn restrict_tree(dir: &Path) -> io::Result<()> {
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            restrict_tree(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), Permissions::from_mode(FILE_MODE))?;
        }
    }
    Ok(())
}

/// Whether the group or others have any permission on `path` (the check ssh makes of a
/// private key file before it uses it).
///
/// # Errors
/// The error of reading its metadata.
pub fn is_shared(path: &Path) -> io::Result<bool> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_folders_are_owner_only_and_existing_files_are_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, Permissions::from_mode(0o755)).unwrap();
        let deep = shared.join("a").join("b");
        create_dir_all(&deep).unwrap();
        assert_eq!(
            (mode(&shared), mode(&shared.join("a")), mode(&deep)),
            (0o755, 0o700, 0o700),
            "an existing folder is left alone, created ones are 0700"
        );
        let file = deep.join("out.csv");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        write(&file, "new").unwrap();
        assert_eq!(
            (
                mode(&file),
                std::fs::read_to_string(&file).unwrap().as_str()
            ),
            (0o600, "new")
        );
        let spill = deep.join("spill");
        drop(create_new(&spill).unwrap());
        assert_eq!(mode(&spill), 0o600);
        assert_eq!(
            create_new(&spill).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        private_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o700);
    }

    #[test]
    fn restrict_tree_narrows_everything_under_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ledger");
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        for (p, m) in [(root.clone(), 0o755), (root.join("blobs"), 0o775)] {
            std::fs::set_permissions(&p, Permissions::from_mode(m)).unwrap();
        }
        for f in ["db", "conf", "blobs/1"] {
            std::fs::write(root.join(f), "x").unwrap();
            std::fs::set_permissions(root.join(f), Permissions::from_mode(0o644)).unwrap();
        }
        assert!(is_shared(&root.join("db")).unwrap());
        restrict_tree(&root).unwrap();
        assert_eq!(
            [root.clone(), root.join("blobs")].map(|p| mode(&p)),
            [0o700, 0o700]
        );
        assert_eq!(
            ["db", "conf", "blobs/1"].map(|f| mode(&root.join(f))),
            [0o600; 3]
        );
        assert!(!is_shared(&root.join("db")).unwrap());
    }
}
