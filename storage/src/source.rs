//! Rows that arrive from a source stream (Kafka) rather than through the
//! write-ahead file: one consuming segment per source partition, the messages
//! that could not be turned into rows (dead letters), and the position reached.
//!
//! The stream is the write-ahead log of these rows: a partition's rows, dead
//! letters and next offset are committed together by the seal that writes them
//! (see [`crate::Table::seal_now`]), and after a restart the partition is read
//! again from the committed offset. Nothing here knows what Kafka is.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mutable_segment::MutableSegment;
use crate::schema::TableSchema;

/// A message of a source partition that did not become a row, kept with why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The source partition.
    pub partition: i32,
    /// The message's offset in its partition.
    pub offset: i64,
    /// Why it was not ingested.
    pub error: String,
    /// The message's bytes, at most [`DEAD_LETTER_PAYLOAD_BYTES`].
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
    /// When it was consumed, microseconds since the epoch.
    pub ingested_micros: i64,
}

/// A dead letter keeps at most this many bytes of its message's payload.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 64 * 1024;

impl DeadLetter {
    /// A dead letter for the message at `partition`/`offset`, its payload cut to
    /// [`DEAD_LETTER_PAYLOAD_BYTES`].
    pub fn new(partition: i32, offset: i64, error: impl Into<String>, payload: &[u8]) -> Self {
        DeadLetter {
            partition,
            offset,
            error: error.into(),
            payload: payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)].to_vec(),
            ingested_micros: chrono::Utc::now().timestamp_micros(),
        }
    }
}

/// The rows of one source partition not yet sealed, and how far it was read.
pub(crate) struct ConsumingSegment {
    pub(crate) mutable: MutableSegment,
    /// When its first row or dead letter arrived.
    pub(crate) since: Option<Instant>,
    /// The offset of the next message to read.
    pub(crate) next_offset: i64,
    pub(crate) dead_letters: Vec<DeadLetter>,
}

impl ConsumingSegment {
    pub(crate) fn new(schema: &TableSchema, next_offset: i64, segment: u32) -> Self {
        ConsumingSegment {
            mutable: MutableSegment::new(schema).numbered(segment),
            since: None,
            next_offset,
            dead_letters: Vec::new(),
        }
    }

    /// Takes the rows and dead letters out for a seal; reading goes on from the
    /// same position into a fresh segment numbered `next_segment`.
    pub(crate) fn freeze(&mut self, schema: &TableSchema, next_segment: u32) -> FrozenPartition {
        let fresh = MutableSegment::new(schema).numbered(next_segment);
        let mutable = std::mem::replace(&mut self.mutable, fresh);
        self.since = None;
        FrozenPartition {
            segment: mutable.id(),
            bytes: mutable.bytes(),
            rows: mutable.blocks(),
            next_offset: self.next_offset,
            dead_letters: std::mem::take(&mut self.dead_letters),
        }
    }
}

/// A partition's share of a seal in progress: still visible to queries until
/// the manifest that commits it is in place.
#[derive(Clone)]
pub(crate) struct FrozenPartition {
    /// The number the rows had as a consuming segment.
    pub(crate) segment: u32,
    pub(crate) rows: Vec<RecordBatch>,
    pub(crate) bytes: usize,
    pub(crate) next_offset: i64,
    pub(crate) dead_letters: Vec<DeadLetter>,
}

/// What the ingesting side reports about a partition, for `sluice.ingestion`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionStatus {
    /// The broker's high watermark as of the last fetch.
    pub high_watermark: Option<i64>,
    /// The newest message's timestamp, microseconds since the epoch.
    pub last_message_micros: Option<i64>,
    /// `consuming`, `paused` (backpressure), `retrying` (broker unreachable) or
    /// `failed`.
    pub state: String,
    /// The last error seen, if any.
    pub last_error: Option<String>,
}

/// Writes dead letters as JSON lines to `path`, durably (see
/// [`crate::fs::write_atomically`]).
pub(crate) fn write_dead_letters(
    fs: &dyn crate::fs::FileSystem,
    path: &Path,
    letters: &[DeadLetter],
) -> Result<()> {
    let mut bytes = Vec::new();
    for letter in letters {
        serde_json::to_writer(&mut bytes, letter).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            section: "dead letters".into(),
            detail: e.to_string(),
        })?;
        bytes.write_all(b"\n").map_err(|e| Error::io(path, e))?;
    }
    crate::fs::write_atomically(fs, path, &bytes)
}

/// Reads a dead-letter file written by [`write_dead_letters`].
///
/// # Errors
/// [`Error::Corrupt`] naming the file and line for a line that does not parse.
pub(crate) fn read_dead_letters(path: &Path) -> Result<Vec<DeadLetter>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            section: format!("dead letter on line {}", n + 1),
            detail: e.to_string(),
        })?);
    }
    Ok(out)
}

/// Bytes as a hex string in JSON.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            text.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let letters = vec![
            DeadLetter::new(3, 17, "not JSON", b"{oops\xff"),
            DeadLetter::new(0, 1, "missing time column", b""),
        ];
        write_dead_letters(&crate::fs::RealFs, &path, &letters).unwrap();
        assert_eq!(read_dead_letters(&path).unwrap(), letters);
        std::fs::write(&path, "{\"partition\": 1}\n").unwrap();
        let err = read_dead_letters(&path).unwrap_err().to_string();
        assert!(
            err.contains("dead.jsonl") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn payloads_are_cut_to_the_limit() {
        let big = vec![b'x'; DEAD_LETTER_PAYLOAD_BYTES + 10];
        assert_eq!(
            DeadLetter::new(0, 0, "too large", &big).payload.len(),
            DEAD_LETTER_PAYLOAD_BYTES
        );
    }
}
