//! Storage errors. Each variant says who is at fault so the query layer can map it to
//! a SQLSTATE; I/O and corruption errors always carry the file they concern.

use std::path::PathBuf;

/// Result alias for storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named table does not exist.
    #[error("relation \"{0}\" does not exist")]
    TableNotFound(String),
    /// A table with this name already exists.
    #[error("relation \"{0}\" already exists")]
    TableExists(String),
    /// A column named in a write does not exist in the table.
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    ColumnNotFound {
        /// Table name.
        table: String,
        /// The unknown column.
        column: String,
    },
    /// A value does not have the column's type and cannot be converted.
    #[error("column \"{column}\" is of type {expected} but expression is of type {found}")]
    TypeMismatch {
        /// Column name.
        column: String,
        /// The column's SQL type.
        expected: String,
        /// The value's SQL type.
        found: String,
    },
    /// Text that does not parse as a value of the wanted type.
    #[error("invalid input syntax for type {ty}: \"{text}\"")]
    InvalidText {
        /// SQL type name.
        ty: String,
        /// The offending text.
        text: String,
    },
    /// A number outside the range of the column's type.
    #[error("{0} out of range")]
    OutOfRange(String),
    /// NULL written into a NOT NULL column.
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNull {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A row has more or fewer values than the columns it is written to.
    #[error("{0}")]
    Arity(String),
    /// A feature that is not built yet (0A000): refused rather than accepted and
    /// ignored.
    #[error("{0} is not supported yet")]
    NotSupported(String),
    /// A table definition that cannot be accepted (bad option value, missing time column...).
    #[error("{0}")]
    InvalidDefinition(String),
    /// A `WITH (...)` option Sluice does not know.
    #[error("unrecognized table option \"{0}\"")]
    UnknownOption(String),
    /// An operating-system error on a file.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file whose bytes are not what Sluice wrote.
    #[error("corrupt file {path}, section {section}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which part of it failed its check.
        section: String,
        /// What was wrong.
        detail: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
