//! Retention: rows older than the table's `retention` before now are not
//! stored when they arrive, are filtered out by queries (exactly, at the row),
//! and leave the disk with the sealed segments that hold nothing newer.

use super::*;

/// What retention has removed since the table was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Sealed segments dropped because every row was past retention.
    pub segments_evicted: u64,
    /// Rows in those segments.
    pub rows_evicted: u64,
    /// Rows that arrived already past retention and were not stored.
    pub rows_expired_on_arrival: u64,
    /// When the last segment was evicted, microseconds since the epoch.
    pub last_eviction_micros: Option<i64>,
}

impl Table {
    /// The oldest time a row may have to be kept and seen (now minus
    /// `retention`), or `None` if the table keeps rows forever. Times are
    /// microseconds since the epoch; a TIMESTAMP column's values are taken as
    /// UTC.
    pub fn retention_cutoff(&self) -> Option<i64> {
        self.retention_cutoff_at(self.clock.now_micros())
    }

    /// As [`Table::retention_cutoff`], for the moment `now` (a statement's
    /// `now()`, in microseconds since the epoch).
    pub fn retention_cutoff_at(&self, now: i64) -> Option<i64> {
        let retention = self.schema.options.retention_micros?;
        Some(now.saturating_sub(retention))
    }

    /// What retention has removed since the table was opened.
    pub fn retention_stats(&self) -> RetentionStats {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leaves out the rows already past retention, counting them. Rows hold
    /// values of the column types.
    pub(super) fn drop_expired(&self, mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
        if let Some(expired) = self.expired_filter() {
            let before = rows.len();
            rows.retain(|r| !expired(r));
            self.count_expired(before - rows.len());
        }
        rows
    }

    /// As [`Table::drop_expired`], copying only when a row is left out.
    pub(super) fn without_expired<'a>(
        &self,
        rows: &'a [Vec<Value>],
    ) -> std::borrow::Cow<'a, [Vec<Value>]> {
        match self.expired_filter() {
            Some(expired) if rows.iter().any(&expired) => {
                let kept: Vec<Vec<Value>> = rows.iter().filter(|r| !expired(r)).cloned().collect();
                self.count_expired(rows.len() - kept.len());
                std::borrow::Cow::Owned(kept)
            }
            _ => std::borrow::Cow::Borrowed(rows),
        }
    }

    /// A test for "this row is past retention", if the table has retention.
    fn expired_filter(&self) -> Option<impl Fn(&Vec<Value>) -> bool> {
        let cutoff = self.retention_cutoff()?;
        let time = self.schema.time_column_index()?;
        Some(
            move |row: &Vec<Value>| matches!(row.get(time), Some(Value::Timestamp(t)) if *t < cutoff),
        )
    }

    pub(super) fn count_expired(&self, rows: usize) {
        if rows > 0 {
            self.retention
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .rows_expired_on_arrival += rows as u64;
        }
    }

    /// Drops the sealed segments whose newest row is past retention: one
    /// manifest commit takes them out, then their files are deleted. Returns
    /// how many were dropped.
    ///
    /// # Errors
    /// I/O errors naming the file; nothing is dropped then.
    pub fn evict_expired(&self) -> Result<usize> {
        let Some(cutoff) = self.retention_cutoff() else {
            return Ok(0);
        };
        let expired = |e: &SegmentEntry| e.time_max.is_none_or(|t| t < cutoff);
        {
            // Checked first under the read lock, so the sealer's every tick
            // does not wait for a running seal when nothing is due.
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            if !state.manifest.segments.iter().any(expired) {
                return Ok(0);
            }
        }
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_retired() {
            return Ok(0);
        }
        let mut manifest = self.manifest();
        let (expired, kept): (Vec<SegmentEntry>, Vec<SegmentEntry>) =
            manifest.segments.drain(..).partition(expired);
        if expired.is_empty() {
            return Ok(0);
        }
        manifest.segments = kept;
        for e in &expired {
            manifest.quarantined.remove(&e.file);
        }
        manifest.save(&*self.fs, &self.dir)?;
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let gone = |p: &Path| expired.iter().any(|e| self.dir.join(&e.file) == p);
            state.sealed.retain(|s| !gone(s.path()));
            state
                .corrupt
                .retain(|(f, _)| !expired.iter().any(|e| e.file == *f));
            state.manifest = manifest;
            if let Some(upsert) = &mut state.upsert {
                // The keys whose latest rows went leave the map with them.
                let gone: Vec<u32> = expired.iter().map(|e| e.id as u32).collect();
                upsert
                    .map
                    .retain(|_, entry| !gone.contains(&entry.location.segment));
                for segment in gone {
                    upsert.cleared.remove(segment);
                    upsert.persisted.remove(segment);
                }
            }
        }
        {
            let mut stats = self.retention.lock().unwrap_or_else(|p| p.into_inner());
            stats.segments_evicted += expired.len() as u64;
            stats.rows_evicted += expired.iter().map(|e| e.rows).sum::<u64>();
            stats.last_eviction_micros = Some(self.clock.now_micros());
        }
        for e in &expired {
            if let Some(cleared) = &e.cleared {
                let p = self.dir.join(cleared);
                if let Err(err) = self.fs.remove_file(&p) {
                    tracing::warn!(file = %p.display(), error = %err, "could not delete an evicted segment's cleared rows");
                }
            }
            let p = self.dir.join(&e.file);
            if let Err(err) = self.fs.remove_file(&p) {
                // Committed already; the next open moves it to lost+found.
                tracing::warn!(file = %p.display(), error = %err, "could not delete an evicted segment");
            }
        }
        tracing::info!(table = %self.schema.name, segments = expired.len(), "evicted segments past retention");
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::clock::{Clock, OffsetClock};
    use crate::fs::Environment;
    use crate::types::Value;

    /// Rows read from a source that are already past retention are counted
    /// and left out, and the partition's offset still moves past them.
    #[test]
    fn consumed_rows_past_retention_are_counted_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let clock = OffsetClock::new();
        let env = Environment {
            clock: std::sync::Arc::clone(&clock) as _,
            ..Environment::default()
        };
        let catalog = Catalog::open_with(dir.path(), env).unwrap();
        let schema = crate::testing::ts_v_schema(
            "events",
            &[
                ("retention", "1 day"),
                ("kafka_brokers", "localhost:9092"),
                ("kafka_topic", "events"),
            ],
        );
        catalog.create_table(schema, false).unwrap();
        let t = catalog.table("events").unwrap();
        let now = clock.now_micros();
        let row = |ts: i64, v: i64| vec![Value::Timestamp(ts), Value::Int(v)];
        let day = 86_400_000_000;
        t.append_consumed(
            0,
            &[
                row(now - 2 * day, 1),
                row(now - 1, 2),
                row(now - 3 * day, 3),
            ],
            vec![],
            3,
        )
        .unwrap();
        assert_eq!(t.rows(), 1);
        assert_eq!(t.retention_stats().rows_expired_on_arrival, 2);
        t.seal_now().unwrap();
        assert_eq!(t.committed_offsets()[&0], 3);
    }
}
