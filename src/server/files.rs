//! Which server files SQL may read and write: `COPY t FROM 'file'` reads only
//! under `import_dir`, `COPY (query) TO 'file'` writes only under
//! `export_dir`, both for an admin. Paths are resolved with every symbolic
//! link followed before they are checked, so no link leads out.

use std::path::{Path, PathBuf};

use sluice_query::Error;

/// The directories COPY may read from and write to; none by default.
#[derive(Clone, Debug, Default)]
pub struct FileAccess {
    /// Where `COPY ... FROM 'file'` may read.
    pub import_dir: Option<PathBuf>,
    /// Where `COPY ... TO 'file'` may write.
    pub export_dir: Option<PathBuf>,
}

impl FileAccess {
    /// The file `given` names (relative to `import_dir`, or absolute), if it
    /// exists and lies inside `import_dir` once links are followed.
    ///
    /// # Errors
    /// 0A000 without an `import_dir`; 42501 outside it; 58P01 for no file.
    pub fn import_path(&self, given: &str) -> Result<PathBuf, Error> {
        let dir = self.import_dir.as_deref().ok_or_else(|| {
            Error::NotSupported(
                "COPY FROM a server file without an import_dir in the server's config".into(),
            )
        })?;
        let root = canonical(dir)?;
        let path = canonical(&root.join(given))?;
        if !path.starts_with(&root) {
            return Err(outside(given, "import_dir"));
        }
        Ok(path)
    }

    /// Where to write the file `given` names (relative to `export_dir`, or
    /// absolute): its directory, links followed, must lie inside
    /// `export_dir`, and the file itself must not be a link.
    ///
    /// # Errors
    /// 0A000 without an `export_dir`; 42501 outside it; 58P01 for no directory.
    pub fn export_path(&self, given: &str) -> Result<PathBuf, Error> {
        let dir = self.export_dir.as_deref().ok_or_else(|| {
            Error::NotSupported(
                "COPY TO a server file without an export_dir in the server's config".into(),
            )
        })?;
        let root = canonical(dir)?;
        let wanted = root.join(given);
        let (Some(parent), Some(name)) = (wanted.parent(), wanted.file_name()) else {
            return Err(outside(given, "export_dir"));
        };
        let path = canonical(parent)?.join(name);
        if !path.starts_with(&root) || path == root {
            return Err(outside(given, "export_dir"));
        }
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(outside(given, "export_dir"));
        }
        Ok(path)
    }
}

fn canonical(path: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(path).map_err(|e| Error::Data {
        code: "58P01",
        message: format!("could not open \"{}\": {e}", path.display()),
    })
}

fn outside(given: &str, dir: &str) -> Error {
    Error::InsufficientPrivilege(format!(
        "\"{given}\" is outside the server's {dir} (symbolic links followed)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_their_directory_even_through_links() {
        let base = tempfile::tempdir().unwrap();
        let inside = base.path().join("in");
        let elsewhere = base.path().join("elsewhere");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(inside.join("a.parquet"), b"x").unwrap();
        std::fs::write(elsewhere.join("b.parquet"), b"x").unwrap();
        std::os::unix::fs::symlink(elsewhere.join("b.parquet"), inside.join("link.parquet"))
            .unwrap();
        std::os::unix::fs::symlink(&elsewhere, inside.join("out")).unwrap();
        let access = FileAccess {
            import_dir: Some(inside.clone()),
            export_dir: Some(inside.clone()),
        };
        let code = |r: Result<PathBuf, Error>| r.map_err(|e| e.sqlstate()).err();
        assert!(access.import_path("a.parquet").is_ok());
        let absolute = inside.join("a.parquet");
        assert!(access.import_path(absolute.to_str().unwrap()).is_ok());
        assert_eq!(
            code(access.import_path("../elsewhere/b.parquet")),
            Some("42501")
        );
        assert_eq!(code(access.import_path("link.parquet")), Some("42501"));
        assert_eq!(code(access.import_path("out/b.parquet")), Some("42501"));
        assert_eq!(code(access.import_path("/etc/passwd")), Some("42501"));
        assert_eq!(code(access.import_path("missing.parquet")), Some("58P01"));

        assert!(access.export_path("new.parquet").is_ok());
        assert_eq!(code(access.export_path("out/new.parquet")), Some("42501"));
        assert_eq!(code(access.export_path("link.parquet")), Some("42501"));
        assert_eq!(code(access.export_path("../new.parquet")), Some("42501"));
        assert_eq!(code(access.export_path(".")), Some("42501"));

        let none = FileAccess::default();
        assert_eq!(code(none.import_path("a.parquet")), Some("0A000"));
        assert_eq!(code(none.export_path("a.parquet")), Some("0A000"));
    }
}
