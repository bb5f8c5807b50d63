//! The write-ahead file: rows written by INSERT or the embedding API are made durable
//! here before they are acknowledged, and replayed into the mutable segment on start.
//!
//! Format (version 2, all integers little-endian):
//!
//! ```text
//! file   = header record*
//! header = "SLWAL\0\0\0" (8 bytes) version:u32
//! record = magic:u32 ("SLRC") seq:u64 len:u32 crc:u32 payload[len]
//!          crc = crc32(seq, len, payload): a flipped bit in the length is caught
//! payload = rows:u32 row*
//! row    = columns:u32 value*
//! value  = 0 (NULL) | 1 b:u8 | 2 i:i64 | 3 bits:u64 (a double, NaN and infinities
//!          exactly) | 4 len:u32 utf8[len] | 5 micros:i64
//! ```
//!
//! Records are numbered from 0 in each file. Writing a record and making it durable
//! are separate steps ([`WriteAheadLog::write`], then [`WriteAheadLog::sync_handle`]'s
//! `sync`) so the table can commit a group of writers' records with one fsync.
//!
//! Recovery: the first record that does not check out ends the valid part. If no
//! valid record follows anywhere after it, it is a torn tail (a write cut short by a
//! crash, never acknowledged; a zero-filled tail included) and is cut off with a
//! warning. If a valid record does follow, acknowledged records sit behind damage:
//! opening refuses with an error naming the file and the byte offset, and truncates
//! nothing. Version 1 files (JSON payloads, no header) are still read, and are
//! rewritten in version 2 before anything is appended.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::{write_atomically, FileSystem, WriteFile};
use crate::types::Value;

const FILE_MAGIC: &[u8; 8] = b"SLWAL\0\0\0";
const VERSION: u32 = 2;
const FILE_HEADER: usize = 12;
const RECORD_MAGIC: &[u8; 4] = b"SLRC";
const RECORD_HEADER: usize = 20;
/// Version 1's record header: length and checksum.
const V1_HEADER: usize = 8;

/// An open write-ahead file.
pub struct WriteAheadLog {
    path: PathBuf,
    /// Shared so a sync can run without the lock that orders writes.
    file: Arc<dyn WriteFile>,
    /// Bytes of whole records in the file.
    len: u64,
    /// The next record's number.
    next_seq: u64,
}

impl WriteAheadLog {
    /// Opens (or creates) the file and returns it with every intact record's rows.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read or written; [`Error::Corrupt`] naming
    /// the file and byte offset if a damaged record has valid records after it.
    pub fn open(fs: &dyn FileSystem, path: &Path) -> Result<(Self, Vec<Vec<Value>>)> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        if !bytes.starts_with(FILE_MAGIC) {
            let rows = if bytes.is_empty() {
                Vec::new()
            } else {
                decode_version_1(path, &bytes)?
            };
            // A new file, or one in the old format: write it afresh in version 2
            // (durably, so a crash leaves the old file or the whole new one).
            let mut fresh = file_header();
            if !rows.is_empty() {
                fresh.extend_from_slice(&encode_record(0, &rows)?);
            }
            write_atomically(fs, path, &fresh)?;
            let log = WriteAheadLog {
                path: path.to_path_buf(),
                file: fs.open_append(path).map_err(|e| Error::io(path, e))?,
                len: fresh.len() as u64,
                next_seq: u64::from(!rows.is_empty()),
            };
            return Ok((log, rows));
        }
        check_file_header(path, &bytes)?;
        let scan = scan_records(path, &bytes)?;
        let file = fs.open_append(path).map_err(|e| Error::io(path, e))?;
        if scan.valid_len < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                at_byte = scan.valid_len,
                dropped_bytes = bytes.len() - scan.valid_len,
                "cutting off a torn write at the end of the write-ahead file"
            );
            file.set_len(scan.valid_len as u64)
                .and_then(|_| file.sync())
                .map_err(|e| Error::io(path, e))?;
        }
        Ok((
            WriteAheadLog {
                path: path.to_path_buf(),
                file,
                len: scan.valid_len as u64,
                next_seq: scan.next_seq,
            },
            scan.rows,
        ))
    }

    /// Appends one record holding `rows` and waits until it is on disk.
    ///
    /// # Errors
    /// As [`WriteAheadLog::write`], or [`Error::Io`] if syncing fails.
    pub fn append(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        self.write(rows)?;
        self.file.sync().map_err(|e| Error::io(&self.path, e))
    }

    /// The file, for syncing the records written so far without holding `&mut self`.
    pub fn sync_handle(&self) -> Arc<dyn WriteFile> {
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
    /// [`Error::OutOfRange`] for a record larger than 4 GiB; [`Error::Io`] if
    /// writing fails. Either way the caller must not apply the rows.
    pub fn write(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        let record = encode_record(self.next_seq, rows)?;
        if let Err(e) = self.file.write_all(&record) {
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::error!(file = %self.path.display(), error = %cut, "cannot cut off a failed write");
            }
            return Err(Error::io(&self.path, e));
        }
        self.len += record.len() as u64;
        self.next_seq += 1;
        Ok(())
    }
}

fn file_header() -> Vec<u8> {
    let mut h = FILE_MAGIC.to_vec();
    h.extend_from_slice(&VERSION.to_le_bytes());
    h
}

fn check_file_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let corrupt = |detail: String| Error::Corrupt {
        path: path.to_path_buf(),
        section: "file header".into(),
        detail,
    };
    let version = bytes
        .get(8..FILE_HEADER)
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
        .ok_or_else(|| corrupt("the header is cut short".into()))?;
    if version != VERSION {
        return Err(corrupt(format!(
            "write-ahead format version {version}; this Sluice reads versions 1 and 2"
        )));
    }
    Ok(())
}

/// Encodes one record: header, then the rows (see the module docs).
fn encode_record(seq: u64, rows: &[Vec<Value>]) -> Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(64 * rows.len());
    put_len(&mut payload, rows.len())?;
    for row in rows {
        put_len(&mut payload, row.len())?;
        for value in row {
            match value {
                Value::Null => payload.push(0),
                Value::Bool(b) => payload.extend_from_slice(&[1, u8::from(*b)]),
                Value::Int(i) => {
                    payload.push(2);
                    payload.extend_from_slice(&i.to_le_bytes());
                }
                Value::Float(f) => {
                    payload.push(3);
                    payload.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                Value::Text(t) => {
                    payload.push(4);
                    put_len(&mut payload, t.len())?;
                    payload.extend_from_slice(t.as_bytes());
                }
                Value::Timestamp(t) => {
                    payload.push(5);
                    payload.extend_from_slice(&t.to_le_bytes());
                }
                Value::Numeric { value, scale } => {
                    payload.push(6);
                    payload.extend_from_slice(&value.to_le_bytes());
                    payload.push(*scale as u8);
                }
            }
        }
    }
    let len = u32::try_from(payload.len()).map_err(|_| {
        Error::OutOfRange(format!(
            "a write of {} bytes in one statement",
            payload.len()
        ))
    })?;
    let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
    record.extend_from_slice(RECORD_MAGIC);
    record.extend_from_slice(&seq.to_le_bytes());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&record_crc(seq, len, &payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<()> {
    let n = u32::try_from(n).map_err(|_| Error::OutOfRange(format!("{n} items in one record")))?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn record_crc(seq: u64, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// What a scan of the records found.
struct Scan {
    rows: Vec<Vec<Value>>,
    /// Bytes up to the end of the last valid record.
    valid_len: usize,
    next_seq: u64,
}

/// The record at `pos` if it is whole, checks out and has number `seq`: its
/// payload and end.
fn record_at(bytes: &[u8], pos: usize, seq: u64) -> Option<(&[u8], usize)> {
    let header = bytes.get(pos..pos.checked_add(RECORD_HEADER)?)?;
    if &header[0..4] != RECORD_MAGIC {
        return None;
    }
    let found_seq = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(header[12..16].try_into().ok()?);
    let crc = u32::from_le_bytes(header[16..20].try_into().ok()?);
    let start = pos + RECORD_HEADER;
    let end = start.checked_add(len as usize)?;
    let payload = bytes.get(start..end)?;
    (found_seq == seq && record_crc(found_seq, len, payload) == crc).then_some((payload, end))
}

fn scan_records(path: &Path, bytes: &[u8]) -> Result<Scan> {
    let mut rows = Vec::new();
    let mut pos = FILE_HEADER;
    let mut seq = 0u64;
    while pos < bytes.len() {
        let Some((payload, end)) = record_at(bytes, pos, seq) else {
            break;
        };
        let mut record = decode_payload(payload).map_err(|detail| Error::Corrupt {
            path: path.to_path_buf(),
            section: format!("record {seq} at byte {pos}"),
            detail,
        })?;
        rows.append(&mut record);
        pos = end;
        seq += 1;
    }
    if pos < bytes.len() {
        // Damage, or a torn tail? Look for any later record that checks out: with
        // the next number after any number of lost ones.
        let later = (pos + 1..bytes.len().saturating_sub(RECORD_HEADER - 1))
            .filter(|&p| bytes[p..].starts_with(RECORD_MAGIC))
            .find_map(|p| {
                let found = bytes.get(p + 4..p + 12)?;
                let n = u64::from_le_bytes(found.try_into().ok()?);
                (n >= seq)
                    .then(|| record_at(bytes, p, n).map(|_| p))
                    .flatten()
            });
        if let Some(at) = later {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                section: format!("record {seq} at byte {pos}"),
                detail: format!(
                    "damaged, with valid records after it (the next at byte {at}); nothing was \
                     truncated: run `sluice check --salvage` or restore the file"
                ),
            });
        }
    }
    Ok(Scan {
        rows,
        valid_len: pos,
        next_seq: seq,
    })
}

/// What `sluice check` finds in a write-ahead file.
#[derive(Debug, Default)]
pub struct WalCheck {
    /// Rows of every record that checks out, before and after any damage.
    pub rows: Vec<Vec<Value>>,
    /// Records that check out.
    pub records: u64,
    /// Byte ranges that are not part of a valid record.
    pub damaged: Vec<std::ops::Range<usize>>,
    /// True when the only damage is a torn tail, which opening cuts off itself.
    pub torn_tail_only: bool,
}

/// Reads every record of the write-ahead file at `path` that checks out,
/// stepping over damage to the next record that does (`sluice check`). Reading
/// only: the file is not changed.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Corrupt`] if its header is
/// damaged or of an unknown version.
pub fn check_file(path: &Path) -> Result<WalCheck> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !bytes.starts_with(FILE_MAGIC) {
        let rows = decode_version_1(path, &bytes)?;
        return Ok(WalCheck {
            records: u64::from(!rows.is_empty()),
            rows,
            damaged: Vec::new(),
            torn_tail_only: true,
        });
    }
    check_file_header(path, &bytes)?;
    let mut out = WalCheck::default();
    let mut pos = FILE_HEADER;
    let mut seq = 0u64;
    while pos < bytes.len() {
        if let Some((payload, end)) = record_at(bytes.as_slice(), pos, seq) {
            if let Ok(mut rows) = decode_payload(payload) {
                out.rows.append(&mut rows);
                out.records += 1;
                pos = end;
                seq += 1;
                continue;
            }
        }
        // Step to the next record that checks out, whatever its number.
        let next = (pos + 1..bytes.len())
            .filter(|&p| bytes[p..].starts_with(RECORD_MAGIC))
            .find_map(|p| {
                let n = u64::from_le_bytes(bytes.get(p + 4..p + 12)?.try_into().ok()?);
                record_at(&bytes, p, n).map(|_| (p, n))
            });
        match next {
            Some((p, n)) => {
                out.damaged.push(pos..p);
                pos = p;
                seq = n;
            }
            None => {
                out.damaged.push(pos..bytes.len());
                break;
            }
        }
    }
    out.torn_tail_only =
        out.damaged.len() <= 1 && out.damaged.first().is_none_or(|r| r.end == bytes.len());
    Ok(out)
}

/// Replaces the write-ahead file at `path` with a version 2 file holding
/// `rows` as one record, durably (what `sluice check --salvage` keeps).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn rewrite(fs: &dyn FileSystem, path: &Path, rows: &[Vec<Value>]) -> Result<()> {
    let mut fresh = file_header();
    if !rows.is_empty() {
        fresh.extend_from_slice(&encode_record(0, rows)?);
    }
    write_atomically(fs, path, &fresh)
}

fn decode_payload(payload: &[u8]) -> std::result::Result<Vec<Vec<Value>>, String> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let count = r.u32()? as usize;
    let mut rows = Vec::with_capacity(count.min(payload.len()));
    for _ in 0..count {
        let width = r.u32()? as usize;
        let mut row = Vec::with_capacity(width.min(payload.len()));
        for _ in 0..width {
            row.push(match r.take(1)?[0] {
                0 => Value::Null,
                1 => Value::Bool(r.take(1)?[0] != 0),
                2 => Value::Int(i64::from_le_bytes(r.array()?)),
                3 => Value::Float(f64::from_bits(u64::from_le_bytes(r.array()?))),
                4 => {
                    let len = r.u32()? as usize;
                    let text = std::str::from_utf8(r.take(len)?).map_err(|e| e.to_string())?;
                    Value::Text(text.to_string())
                }
                5 => Value::Timestamp(i64::from_le_bytes(r.array()?)),
                6 => Value::Numeric {
                    value: i128::from_le_bytes(r.array()?),
                    scale: r.take(1)?[0] as i8,
                },
                tag => return Err(format!("unknown value tag {tag}")),
            });
        }
        rows.push(row);
    }
    if r.at != payload.len() {
        return Err(format!("{} bytes after the last row", payload.len() - r.at));
    }
    Ok(rows)
}

/// Reads a payload front to back, every length checked against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("cut short at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        self.take(N)?
            .try_into()
            .map_err(|_| "short read".to_string())
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

/// Version 1: `[len: u32][crc32 of payload: u32][payload]`, the payload a JSON array
/// of rows. Read for data directories written before version 2; a bad record is
/// handled as version 1 always did (cut at the end, refused before it).
fn decode_version_1(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<Value>>> {
    let mut rows = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + V1_HEADER) else {
            break;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let end = pos + V1_HEADER + len;
        let Some(payload) = bytes.get(pos + V1_HEADER..end) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            if end == bytes.len() {
                break;
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
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn wal_with(path: &Path, records: &[Vec<Vec<Value>>]) {
        let (mut wal, _) = WriteAheadLog::open(&crate::fs::RealFs, path).unwrap();
        for r in records {
            wal.append(r).unwrap();
        }
    }

    #[test]
    fn replays_records_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        wal_with(
            &path,
            &[
                vec![vec![Value::Int(1)], vec![Value::Int(2)]],
                vec![
                    vec![Value::Text("x".into())],
                    vec![Value::Numeric {
                        value: -1005,
                        scale: 2,
                    }],
                ],
            ],
        );
        // A crash half-way through a third write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        Write::write_all(&mut f, b"SLRC\x02\0\0").unwrap();
        drop(f);
        let (mut wal, rows) = WriteAheadLog::open(&crate::fs::RealFs, &path).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[2], vec![Value::Text("x".into())]);
        assert_eq!(
            rows[3],
            vec![Value::Numeric {
                value: -1005,
                scale: 2
            }]
        );
        // Appending after the cut continues the numbering.
        wal.append(&[vec![Value::Int(4)]]).unwrap();
        drop(wal);
        assert_eq!(
            WriteAheadLog::open(&crate::fs::RealFs, &path)
                .unwrap()
                .1
                .len(),
            5
        );
    }

    #[test]
    fn every_double_comes_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut doubles = vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MIN_POSITIVE / 2.0,
        ];
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            doubles.push(f64::from_bits(seed));
        }
        let rows: Vec<Vec<Value>> = doubles.iter().map(|d| vec![Value::Float(*d)]).collect();
        wal_with(&path, &[rows]);
        let (_, back) = WriteAheadLog::open(&crate::fs::RealFs, &path).unwrap();
        for (d, row) in doubles.iter().zip(&back) {
            match row[0] {
                Value::Float(f) => assert_eq!(f.to_bits(), d.to_bits()),
                ref other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_zero_filled_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        wal_with(&path, &[vec![vec![Value::Int(1)]]]);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        Write::write_all(&mut f, &[0u8; 4096]).unwrap();
        drop(f);
        let (_, rows) = WriteAheadLog::open(&crate::fs::RealFs, &path).unwrap();
        assert_eq!(rows, vec![vec![Value::Int(1)]]);
    }

    #[test]
    fn damage_before_valid_records_refuses_and_truncates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let records: Vec<Vec<Vec<Value>>> = (0..3).map(|i| vec![vec![Value::Int(i)]]).collect();
        wal_with(&path, &records);
        let original = std::fs::read(&path).unwrap();
        // A flipped bit in the first record's length field.
        for at in [FILE_HEADER + 12, FILE_HEADER + RECORD_HEADER + 4] {
            let mut bytes = original.clone();
            bytes[at] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            let err = WriteAheadLog::open(&crate::fs::RealFs, &path)
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("wal.log") && err.contains("at byte 12"),
                "{err}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing truncated");
        }
    }

    #[test]
    fn version_1_files_are_read_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut bytes = Vec::new();
        for rows in [r#"[[1,"a"]]"#, r#"[[2,null]]"#] {
            let payload = rows
                .replace("1,", "{\"Int\":1},")
                .replace("2,", "{\"Int\":2},")
                .replace("\"a\"", "{\"Text\":\"a\"}")
                .replace("null", "\"Null\"");
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(payload.as_bytes()).to_le_bytes());
            bytes.extend_from_slice(payload.as_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut wal, rows) = WriteAheadLog::open(&crate::fs::RealFs, &path).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Value::Int(1), Value::Text("a".into())],
                vec![Value::Int(2), Value::Null]
            ]
        );
        wal.append(&[vec![Value::Int(3)]]).unwrap();
        drop(wal);
        assert!(std::fs::read(&path).unwrap().starts_with(FILE_MAGIC));
        assert_eq!(
            WriteAheadLog::open(&crate::fs::RealFs, &path)
                .unwrap()
                .1
                .len(),
            3
        );
    }
}
