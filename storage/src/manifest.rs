//! A table's manifest: its sealed segments, the oldest write-ahead generation
//! still needed, and how far each source partition is sealed (with its dead
//! letters). Replacing the manifest (write temp, fsync, rename, fsync the
//! directory) is the only commit: after a crash, a table is exactly what its
//! manifest says plus the write-ahead generations at or above `wal_floor`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::write_atomically;
use crate::error::{Error, Result};

/// The manifest's file name inside a table directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One sealed segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        }
    }
}

/// The committed state of a table's segments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
}

impl Manifest {
    /// Reads the manifest of the table in `dir`; a table without one has no sealed
    /// segments yet.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file if it does not parse.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path,
                section: "manifest".into(),
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Commits this manifest for the table in `dir`, atomically.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Corrupt {
            path: dir.join(MANIFEST_FILE),
            section: "manifest".into(),
            detail: e.to_string(),
        })?;
        write_atomically(&dir.join(MANIFEST_FILE), &bytes)
    }
}
