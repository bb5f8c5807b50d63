//! The write-ahead file: rows written by INSERT or the embedding API are made durable
//! here before they are acknowledged, and replayed into the mutable segment on start.
//!
//! A record is `[len: u32 LE][crc32 of payload: u32 LE][payload]`, the payload a JSON
//! array of rows. Writing a record and making it durable are separate steps
//! ([`WriteAheadLog::write`], then [`WriteAheadLog::sync_handle`]'s `sync_data`) so
//! the table can commit a group of writers' records with one fsync. A torn record at the end (a write cut short by a crash, which was
//! never acknowledged) is cut off on open; a bad record before the end is corruption
//! and is reported with the file name.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::types::Value;

const HEADER: usize = 8;

/// An open write-ahead file.
pub struct WriteAheadLog {
    path: PathBuf,
    /// Shared so a sync can run without the lock that orders writes.
    file: Arc<File>,
    /// Bytes of whole records in the file.
    len: u64,
}

impl WriteAheadLog {
    /// Opens (or creates) the file and returns it with every intact record's rows.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::Corrupt`] if a record other
    /// than the last one fails its checksum.
    pub fn open(path: &Path) -> Result<(Self, Vec<Vec<Value>>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        let (rows, good_len) = decode_records(path, &bytes)?;
        if good_len < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                dropped_bytes = bytes.len() - good_len,
                "cutting off a torn write at the end of the write-ahead file"
            );
            file.set_len(good_len as u64)
                .map_err(|e| Error::io(path, e))?;
            file.seek(SeekFrom::End(0))
                .map_err(|e| Error::io(path, e))?;
            file.sync_all().map_err(|e| Error::io(path, e))?;
        }
        Ok((
            WriteAheadLog {
                path: path.to_path_buf(),
                file: Arc::new(file),
                len: good_len as u64,
            },
            rows,
        ))
    }

    /// Appends one record holding `rows` and waits until it is on disk.
    ///
    /// # Errors
    /// As [`WriteAheadLog::write`], or [`Error::Io`] if syncing fails.
    pub fn append(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        self.write(rows)?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// The file, for syncing the records written so far without holding `&mut self`.
    pub fn sync_handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record holding `rows` to the file (the page cache); it is durable
    /// only after a later sync. A write that fails part-way is cut off again, so the
    /// file never holds half a record before a good one.
    ///
    /// # Errors
    /// [`Error::Io`] if writing fails; the caller must then not apply the rows.
    pub fn write(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        let payload = serde_json::to_vec(rows).map_err(|e| Error::Corrupt {
            path: self.path.clone(),
            section: "record".into(),
            detail: format!("cannot encode rows: {e}"),
        })?;
        let len = u32::try_from(payload.len()).map_err(|_| {
            Error::OutOfRange(format!("write of {} bytes in one statement", payload.len()))
        })?;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        if let Err(e) = (&*self.file).write_all(&record) {
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::error!(file = %self.path.display(), error = %cut, "cannot cut off a failed write");
            }
            return Err(Error::io(&self.path, e));
        }
        self.len += record.len() as u64;
        Ok(())
    }
}

fn decode_records(path: &Path, bytes: &[u8]) -> Result<(Vec<Vec<Value>>, usize)> {
    let mut rows = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + HEADER) else {
            break; // torn header at the end
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let end = pos + HEADER + len;
        let Some(payload) = bytes.get(pos + HEADER..end) else {
            break; // torn payload at the end
        };
        if crc32fast::hash(payload) != crc {
            if end == bytes.len() {
                break; // the last write was cut short
            }
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                section: format!("record at byte {pos}"),
                detail: "checksum mismatch".into(),
            });
        }
        let mut record: Vec<Vec<Value>> =
            serde_json::from_slice(payload).map_err(|e| Error::Corrupt {
                path: path.to_path_buf(),
                section: format!("record at byte {pos}"),
                detail: e.to_string(),
            })?;
        rows.append(&mut record);
        pos = end;
    }
    Ok((rows, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_records_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (mut wal, rows) = WriteAheadLog::open(&path).unwrap();
            assert!(rows.is_empty());
            wal.append(&[vec![Value::Int(1)], vec![Value::Int(2)]])
                .unwrap();
            wal.append(&[vec![Value::Text("x".into())]]).unwrap();
        }
        // Simulate a crash half-way through a third write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[42, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (_, rows) = WriteAheadLog::open(&path).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], vec![Value::Text("x".into())]);
    }

    #[test]
    fn corruption_before_the_end_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let (mut wal, _) = WriteAheadLog::open(&path).unwrap();
        wal.append(&[vec![Value::Int(1)]]).unwrap();
        wal.append(&[vec![Value::Int(2)]]).unwrap();
        drop(wal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 1] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = WriteAheadLog::open(&path).err().unwrap().to_string();
        assert!(err.contains("wal.log") && err.contains("checksum"), "{err}");
    }
}
