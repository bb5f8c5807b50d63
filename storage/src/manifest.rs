//! A table's manifest: its sealed segments, the oldest write-ahead generation
//! still needed, and how far each source partition is sealed (with its dead
//! letters). Replacing the manifest (write temp, fsync, rename, fsync the
//! directory) is the only commit: after a crash, a table is exactly what its
//! manifest says plus the write-ahead generations at or above `wal_floor`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fs::{write_atomically, FileSystem};

/// The manifest's file name inside a table directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest format this Sluice writes. Version 1 (no trailer), 2 (no
/// `cleared` files) and 3 (no `imported` files) are still read. Fields a version does not know are refused,
/// so an older Sluice never reads a newer manifest as if they were not there.
pub const MANIFEST_VERSION: u32 = 4;

/// Ends the JSON body of a version 2 manifest: `#crc32=` and the CRC-32 of the body
/// (8 hex digits), then the version.
const TRAILER: &str = "\n#crc32=";

/// One sealed segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// The segment's number in the table.
    pub id: u64,
    /// Its file name inside the table directory.
    pub file: String,
    /// Rows.
    pub rows: u64,
    /// Time range, microseconds.
    pub time_min: Option<i64>,
    /// Time range, microseconds.
    pub time_max: Option<i64>,
    /// When it was sealed, microseconds since the epoch.
    pub created_micros: i64,
    /// The file holding the rows of an upsert table's segment that later rows
    /// of their key superseded, as of this commit (version 3); none if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared: Option<String>,
    /// The source partition its rows came from (none for rows written through
    /// the write-ahead file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

impl SegmentEntry {
    /// The entry for segment `id`, just written to `file` with `footer`.
    pub fn sealed_now(id: u64, file: String, footer: &crate::segment::Footer) -> Self {
        SegmentEntry {
            id,
            file,
            rows: footer.rows,
            time_min: footer.time_min,
            time_max: footer.time_max,
            created_micros: chrono::Utc::now().timestamp_micros(),
            partition: None,
            cleared: None,
        }
    }
}

/// A file imported into the table (`sluice import`, `COPY ... FROM 'file'`),
/// as committed with its rows: an import of the same file again is skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedFile {
    /// The file's absolute path when it was imported.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// A checksum of its metadata (for Parquet, the footer), which changes
    /// with any change to its contents.
    pub checksum: String,
    /// Rows it added.
    pub rows: u64,
}

impl ImportedFile {
    /// True when `other` is the same file: the same path, size and checksum.
    pub fn same_file(&self, other: &ImportedFile) -> bool {
        self.path == other.path && self.size == other.size && self.checksum == other.checksum
    }
}

/// The committed state of a table's segments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Sealed segments, oldest first.
    pub segments: Vec<SegmentEntry>,
    /// The number the next segment will take.
    pub next_segment: u64,
    /// Write-ahead generations below this hold only sealed rows.
    pub wal_floor: u64,
    /// Per source partition, the offset of the first message not yet sealed:
    /// where reading resumes after a restart.
    #[serde(default)]
    pub source_offsets: std::collections::BTreeMap<i32, i64>,
    /// Files of committed dead letters, oldest first.
    #[serde(default)]
    pub dead_letter_files: Vec<String>,
    /// The number the next dead-letter file will take.
    #[serde(default)]
    pub next_dead_letters: u64,
    /// The number in the next cleared-rows file's name (version 3).
    #[serde(default)]
    pub next_cleared: u64,
    /// Segment files that failed a check, with the check: left out of queries
    /// after a restart too, until `sluice check --salvage` or a restored file.
    #[serde(default)]
    pub quarantined: std::collections::BTreeMap<String, String>,
    /// Files imported, in the order their rows were committed (version 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imported: Vec<ImportedFile>,
}

impl Manifest {
    /// Reads the manifest of the table in `dir`: a JSON body, then a trailer with
    /// its CRC-32 and the format version (a version 1 manifest has no trailer).
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file if it is missing, fails its checksum, does
    /// not parse, or has a version this Sluice does not know: a table is never
    /// taken for empty because its manifest could not be read.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let corrupt = |detail: String| Error::Corrupt {
            path: path.clone(),
            section: "manifest".into(),
            detail,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(
                    "the manifest is missing: the table's committed state is unknown".into(),
                ))
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let body = match text.rfind(TRAILER) {
            Some(at) => {
                let trailer = text[at + TRAILER.len()..].trim_end();
                let (crc, version) = trailer
                    .split_once(" version=")
                    .ok_or_else(|| corrupt("malformed trailer".into()))?;
                let version: u32 = version
                    .parse()
                    .map_err(|_| corrupt(format!("malformed version {version:?}")))?;
                if version > MANIFEST_VERSION {
                    return Err(corrupt(format!(
                        "manifest version {version}; this Sluice reads up to {MANIFEST_VERSION}"
                    )));
                }
                let body = &text[..at];
                if format!("{:08x}", crc32fast::hash(body.as_bytes())) != crc {
                    return Err(corrupt("checksum mismatch".into()));
                }
                body
            }
            None => text,
        };
        serde_json::from_str(body).map_err(|e| corrupt(e.to_string()))
    }

    /// Commits this manifest for the table in `dir`, atomically (see
    /// [`write_atomically`]).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        let body = serde_json::to_string_pretty(self).map_err(|e| Error::Corrupt {
            path: dir.join(MANIFEST_FILE),
            section: "manifest".into(),
            detail: e.to_string(),
        })?;
        let crc = crc32fast::hash(body.as_bytes());
        let text = format!("{body}{TRAILER}{crc:08x} version={MANIFEST_VERSION}\n");
        write_atomically(fs, &dir.join(MANIFEST_FILE), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_damaged_or_future_manifest_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.json") && err.contains("missing"),
            "{err}"
        );
        let m = Manifest {
            next_segment: 7,
            ..Manifest::default()
        };
        m.save(&crate::fs::RealFs, dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
        let path = dir.path().join(MANIFEST_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            good.replace("\"next_segment\": 7", "\"next_segment\": 8"),
        )
        .unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        std::fs::write(&path, good.replace("version=4", "version=9")).unwrap();
        assert!(Manifest::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        // Version 1: the JSON body alone.
        std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    }
}
