//! `sluice check`: reads every file of a data directory as opening it would and
//! reports what is damaged; with salvage, moves each damaged file into the
//! table's `lost+found/` and keeps every readable record, so the directory opens
//! again. Nothing is deleted.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::{sync_dir, write_atomically, FileSystem, RealFs};
use crate::manifest::Manifest;
use crate::schema::TableSchema;
use crate::segment::SealedSegment;
use crate::table::LOST_AND_FOUND;

/// One damaged file, and what salvage did about it.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
    /// What salvage did (`None` when not salvaging, or when it cannot help).
    pub action: Option<String>,
}

/// What a check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Tables looked at.
    pub tables: usize,
    /// Files read and found sound.
    pub sound_files: usize,
    /// Damage found.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// True when some damage is still there (not salvaged).
    pub fn has_damage_left(&self) -> bool {
        self.findings.iter().any(|f| f.action.is_none())
    }
}

/// Checks the data directory `dir`; with `salvage`, repairs what can be
/// repaired (see the module docs).
///
/// # Errors
/// [`Error::Io`] if the directory cannot be read or is open in another process.
pub fn check_data_dir(dir: &Path, salvage: bool) -> Result<CheckReport> {
    // Stop the server first: checking a directory in use would race its writes.
    let _lock = crate::catalog::lock_data_dir(dir)?;
    let mut report = CheckReport::default();
    let tables_dir = dir.join("tables");
    let mut entries: Vec<PathBuf> = fs::read_dir(&tables_dir)
        .map_err(|e| Error::io(&tables_dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.to_string_lossy().ends_with(".dropped"))
        .collect();
    entries.sort();
    for table_dir in entries {
        report.tables += 1;
        check_table(&table_dir, salvage, &mut report)?;
    }
    Ok(report)
}

fn check_table(dir: &Path, salvage: bool, report: &mut CheckReport) -> Result<()> {
    let def = dir.join("table.json");
    let schema = match fs::read(&def)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<TableSchema>(&b).map_err(|e| e.to_string()))
    {
        Ok(schema) => {
            report.sound_files += 1;
            Some(schema)
        }
        Err(e) => {
            report.findings.push(Finding {
                path: def,
                problem: format!("the table definition cannot be read: {e}"),
                action: None,
            });
            None
        }
    };
    let mut manifest = match Manifest::load(dir) {
        Ok(m) => {
            report.sound_files += 1;
            m
        }
        Err(e) => {
            report.findings.push(Finding {
                path: dir.join(crate::manifest::MANIFEST_FILE),
                problem: format!("{e}; restore it from a backup (salvage cannot rebuild it)"),
                action: None,
            });
            return Ok(());
        }
    };
    let mut changed = false;
    let mut kept = Vec::new();
    for entry in std::mem::take(&mut manifest.segments) {
        let path = dir.join(&entry.file);
        let checked = SealedSegment::open(&path).and_then(|s| {
            if let Some(schema) = &schema {
                s.check_schema(schema)?;
            }
            s.verify()
        });
        if let Some(file) = &entry.cleared {
            let cleared_path = dir.join(file);
            match crate::table::upsert::read_cleared(&cleared_path) {
                Ok(_) => report.sound_files += 1,
                Err(e) => report.findings.push(Finding {
                    path: cleared_path,
                    problem: format!(
                        "{e}; the table still opens and resolves the segment's keys by comparison \
                         value (wrong only for a key with two rows of equal comparison value)"
                    ),
                    action: None,
                }),
            }
        }
        match checked {
            Ok(()) => {
                report.sound_files += 1;
                if manifest.quarantined.remove(&entry.file).is_some() && salvage {
                    // Restored from a backup: back into queries.
                    changed = true;
                }
                kept.push(entry);
            }
            Err(e) => {
                let action = if salvage {
                    move_aside(dir, &path)?;
                    manifest.quarantined.remove(&entry.file);
                    changed = true;
                    Some(format!(
                        "moved to {LOST_AND_FOUND}/ and taken out of the manifest: its {} rows \
                         ({:?}..{:?}) are gone from queries; re-ingest that time range",
                        entry.rows, entry.time_min, entry.time_max
                    ))
                } else {
                    kept.push(entry);
                    None
                };
                report.findings.push(Finding {
                    path,
                    problem: e.to_string(),
                    action,
                });
            }
        }
    }
    manifest.segments = kept;
    let mut letters = Vec::new();
    for file in std::mem::take(&mut manifest.dead_letter_files) {
        let path = dir.join(&file);
        match crate::source::read_dead_letters(&path) {
            Ok(_) => {
                report.sound_files += 1;
                letters.push(file);
            }
            Err(e) => {
                let action = if salvage {
                    move_aside(dir, &path)?;
                    changed = true;
                    Some(format!(
                        "moved to {LOST_AND_FOUND}/ and taken out of the manifest"
                    ))
                } else {
                    letters.push(file);
                    None
                };
                report.findings.push(Finding {
                    path,
                    problem: e.to_string(),
                    action,
                });
            }
        }
    }
    manifest.dead_letter_files = letters;
    if changed {
        manifest.save(&RealFs, dir)?;
    }
    check_write_ahead_files(dir, &manifest, salvage, report)
}

fn check_write_ahead_files(
    dir: &Path,
    manifest: &Manifest,
    salvage: bool,
    report: &mut CheckReport,
) -> Result<()> {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let g = name
                .strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            (g >= manifest.wal_floor).then(|| (g, e.path()))
        })
        .collect();
    files.sort();
    for (_, path) in files {
        let found = match crate::wal::check_file(&path) {
            Ok(found) => found,
            Err(e) => {
                report.findings.push(Finding {
                    path,
                    problem: e.to_string(),
                    action: None,
                });
                continue;
            }
        };
        if found.torn_tail_only {
            report.sound_files += 1;
            continue;
        }
        let problem = format!(
            "damaged bytes {:?}; {} records read",
            found.damaged, found.records
        );
        let action = if salvage {
            let lost = dir.join(LOST_AND_FOUND);
            RealFs
                .create_dir_all(&lost)
                .map_err(|e| Error::io(&lost, e))?;
            sync_dir(&RealFs, dir)?;
            let name = path
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            let copy = lost.join(&name);
            // The original is durable in lost+found before it is replaced.
            let original = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            write_atomically(&RealFs, &copy, &original)?;
            crate::wal::rewrite(&RealFs, &path, &found.rows)?;
            Some(format!(
                "the original moved to {LOST_AND_FOUND}/; the file now holds the {} readable rows",
                found.rows.len()
            ))
        } else {
            None
        };
        report.findings.push(Finding {
            path,
            problem,
            action,
        });
    }
    Ok(())
}

fn move_aside(dir: &Path, path: &Path) -> Result<()> {
    let lost = dir.join(LOST_AND_FOUND);
    RealFs
        .create_dir_all(&lost)
        .map_err(|e| Error::io(&lost, e))?;
    let to = lost.join(path.file_name().unwrap_or_default());
    RealFs.rename(path, &to).map_err(|e| Error::io(path, e))?;
    sync_dir(&RealFs, &lost)?;
    sync_dir(&RealFs, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::types::Value;

    #[test]
    fn salvage_keeps_every_readable_record_and_the_directory_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let table_dir = {
            let cat = Catalog::open(dir.path()).unwrap();
            let schema = crate::testing::ts_v_schema("t", &[]);
            cat.create_table(schema, false).unwrap();
            let t = cat.table("t").unwrap();
            for i in 0..5 {
                t.append(vec![vec![Value::Timestamp(i), Value::Int(i)]])
                    .unwrap();
            }
            t.dir().to_path_buf()
        };
        let wal = fs::read_dir(&table_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".log"))
            .unwrap();
        // Damage the second record's length: the table no longer opens.
        let mut bytes = fs::read(&wal).unwrap();
        // File header 12 bytes, record header 20 (length at 12..16 of it).
        let first_len = u32::from_le_bytes(bytes[24..28].try_into().unwrap()) as usize;
        let second = 12 + 20 + first_len;
        bytes[second + 12] ^= 0x40;
        fs::write(&wal, &bytes).unwrap();
        assert!(Catalog::open(dir.path()).is_err());

        let report = check_data_dir(dir.path(), false).unwrap();
        assert!(report.has_damage_left());
        assert_eq!(fs::read(&wal).unwrap(), bytes, "checking changes nothing");

        let report = check_data_dir(dir.path(), true).unwrap();
        assert!(!report.has_damage_left(), "{report:?}");
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(
            cat.table("t").unwrap().rows(),
            4,
            "every record but the damaged one"
        );
        let kept = table_dir
            .join(LOST_AND_FOUND)
            .join(wal.file_name().unwrap());
        assert_eq!(fs::read(kept).unwrap(), bytes, "the original is kept");
    }
}
