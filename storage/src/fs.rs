//! The one seam every change to the data directory goes through.
//!
//! Storage never creates, writes, syncs, renames or deletes a file except through
//! a [`FileSystem`]. In production that is [`RealFs`], a thin layer over
//! `std::fs`. In tests it can be a simulated disk that keeps what was synced
//! apart from what was only written, and loses power at a chosen operation: that
//! is how the fsync discipline in `docs/format.md` is proven, not just described.
//!
//! Reads (`std::fs::read`, memory maps) do not go through the seam: they change
//! nothing that a crash could lose.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// What a catalog and its tables take from the outside world: the file system
/// every change goes through and the clock retention reads. Tests pass a
/// simulated disk or a clock they move forward.
#[derive(Clone)]
pub struct Environment {
    /// Where files are created, written, synced, renamed and deleted.
    pub fs: Arc<dyn FileSystem>,
    /// Now, for retention.
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            fs: real(),
            clock: crate::clock::system(),
        }
    }
}

/// The operations that change what a crash leaves behind.
pub trait FileSystem: Send + Sync {
    /// Creates `path` (truncating it if it exists) for writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>>;
    /// Opens the existing file `path` for appending.
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>>;
    /// Renames `from` to `to`, replacing `to`; durable once both parent
    /// directories are synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file; durable once its directory is synced.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Deletes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and any missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created, renamed or deleted in it)
    /// durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// A file open for writing through a [`FileSystem`]. Methods take `&self` so one
/// writer can sync while another appends (the write-ahead file's group commit).
pub trait WriteFile: Send + Sync {
    /// Writes all of `bytes` at the end of what this handle wrote before (at the
    /// end of the file, for a handle from [`FileSystem::open_append`]).
    fn write_all(&self, bytes: &[u8]) -> io::Result<()>;
    /// Makes the file's contents durable (`fdatasync`: the length included).
    fn sync(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

/// The operating system's file system, shared.
pub fn real() -> Arc<dyn FileSystem> {
    Arc::new(RealFs)
}

impl FileSystem for RealFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        Ok(Arc::new(File::create(path)?))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        Ok(Arc::new(OpenOptions::new().append(true).open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

impl WriteFile for File {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut f: &File = self;
        Write::write_all(&mut f, bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new
/// file: write a temporary file, sync it, rename it over `path`, sync the
/// directory.
///
/// # Errors
/// [`Error::Io`] naming the file that could not be written.
pub fn write_atomically(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let f = fs.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync())
        .map_err(|e| Error::io(&tmp, e))?;
    fs.rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(fs, parent)?;
    }
    Ok(())
}

/// Syncs a directory's entries.
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))
}
