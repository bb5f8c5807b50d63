//! Query errors, grouped by who is at fault, each with the SQLSTATE a client sees.

use arrow::error::ArrowError;

/// Result alias for the query engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a statement can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse (42601).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A table that does not exist (42P01).
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// A column that does not exist (42703).
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    /// A function or operator that does not exist for these argument types (42883).
    #[error("{0}")]
    UndefinedFunction(String),
    /// An operator or function call that more than one candidate fits, as with
    /// `unknown + unknown` (42725).
    #[error("{0}")]
    AmbiguousFunction(String),
    /// A column name that matches more than one column (42702).
    #[error("column reference \"{0}\" is ambiguous")]
    AmbiguousColumn(String),
    /// A column used outside GROUP BY and aggregates, or an aggregate where none may be (42803).
    #[error("{0}")]
    Grouping(String),
    /// An ORDER BY that names something it may not (42P10).
    #[error("{0}")]
    InvalidColumnReference(String),
    /// Mismatched types (42804).
    #[error("{0}")]
    DatatypeMismatch(String),
    /// A cast that does not exist (42846).
    #[error("cannot cast type {from} to {to}")]
    CannotCast {
        /// Source type.
        from: String,
        /// Target type.
        to: String,
    },
    /// Text that is not a valid value of a type (22P02, or 22007 for dates and times).
    #[error("{message}")]
    InvalidText {
        /// The message, naming the type and text.
        message: String,
        /// 22P02 or 22007.
        sqlstate: &'static str,
    },
    /// A scalar subquery returned more than one row (21000).
    #[error("more than one row returned by a subquery used as an expression")]
    CardinalityViolation,
    /// Division by zero (22012).
    #[error("division by zero")]
    DivisionByZero,
    /// A number too large for its type (22003).
    #[error("{0}")]
    NumericOutOfRange(String),
    /// A bad argument value, e.g. an unknown date_trunc unit (22023).
    #[error("{0}")]
    InvalidParameter(String),
    /// Another data exception with its own SQLSTATE (class 22): an invalid
    /// regular expression (2201B), logarithm argument (2201E), power or
    /// square root argument (2201F), date/time format (22007), date/time
    /// value out of range (22008).
    #[error("{message}")]
    Data {
        /// The SQLSTATE.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// An invalid definition, e.g. a missing time column (42P16).
    #[error("{0}")]
    InvalidDefinition(String),
    /// A protocol-level mistake, e.g. a missing parameter value (08P01).
    #[error("{0}")]
    Protocol(String),
    /// A cursor that does not exist (34000).
    #[error("cursor \"{0}\" does not exist")]
    InvalidCursor(String),
    /// An unknown configuration parameter (42704).
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    /// Valid SQL that Sluice does not support (0A000).
    #[error("{0} is not supported")]
    NotSupported(String),
    /// A statement nested too deeply to run safely (54001).
    #[error("stack depth limit exceeded: {0}")]
    StackDepth(String),
    /// The statement was cancelled or ran past its timeout (57014).
    #[error("canceling statement due to {0}")]
    Cancelled(&'static str),
    /// The statement needed more memory than its bound (53200).
    #[error("out of memory: {0}")]
    ResourcesExhausted(String),
    /// An error from storage, mapped by its kind.
    #[error(transparent)]
    Storage(#[from] sluice_storage::Error),
    /// The server is shutting down and stopped the statement (57P01).
    #[error("terminating connection due to administrator command")]
    AdminShutdown,
    /// The session's role does not allow the statement (42501).
    #[error("permission denied: {0}")]
    InsufficientPrivilege(String),
    /// A write in a read-only transaction (25006).
    #[error("cannot execute {0} in a read-only transaction")]
    ReadOnlyTransaction(String),
    /// A broken invariant inside Sluice: likely a bug (XX000).
    #[error("internal error (likely a bug in Sluice): {0}")]
    Internal(String),
}

impl Error {
    /// The five-character SQLSTATE code PostgreSQL clients expect.
    pub fn sqlstate(&self) -> &'static str {
        use sluice_storage::Error as S;
        match self {
            Error::Syntax(_) => "42601",
            Error::UndefinedTable(_) => "42P01",
            Error::UndefinedColumn(_) => "42703",
            Error::UndefinedFunction(_) => "42883",
            Error::AmbiguousColumn(_) => "42702",
            Error::AmbiguousFunction(_) => "42725",
            Error::Grouping(_) => "42803",
            Error::DatatypeMismatch(_) => "42804",
            Error::InvalidColumnReference(_) => "42P10",
            Error::CannotCast { .. } => "42846",
            Error::InvalidText { sqlstate, .. } => sqlstate,
            Error::DivisionByZero => "22012",
            Error::CardinalityViolation => "21000",
            Error::NumericOutOfRange(_) => "22003",
            Error::InvalidParameter(_) => "22023",
            Error::Data { code, .. } => code,
            Error::InvalidDefinition(_) => "42P16",
            Error::NotSupported(_) => "0A000",
            Error::StackDepth(_) => "54001",
            Error::Protocol(_) => "08P01",
            Error::UnknownSetting(_) => "42704",
            Error::InvalidCursor(_) => "34000",
            Error::Cancelled(_) => "57014",
            Error::ResourcesExhausted(_) => "53200",
            Error::Internal(_) => "XX000",
            Error::InsufficientPrivilege(_) => "42501",
            Error::AdminShutdown => "57P01",
            Error::ReadOnlyTransaction(_) => "25006",
            Error::Storage(e) => match e {
                S::TableNotFound(_) => "42P01",
                S::TableExists(_) => "42P07",
                S::ColumnNotFound { .. } => "42703",
                S::TypeMismatch { .. } => "42804",
                S::InvalidText { ty, .. }
                    if ty.starts_with("timestamp") || ty == "date" || ty == "interval" =>
                {
                    "22007"
                }
                S::InvalidText { .. } => "22P02",
                S::OutOfRange(_) => "22003",
                S::NotNull { .. } => "23502",
                S::Arity(_) => "42601",
                S::InvalidDefinition(_) => "42P16",
                S::NotSupported(_) => "0A000",
                S::UnknownOption(_) => "22023",
                S::Io { .. } => "58030",
                S::Corrupt { .. } => "XX001",
            },
        }
    }

    /// A plan-time "no such function/operator" error.
    pub fn undefined_function(what: impl Into<String>) -> Self {
        Error::UndefinedFunction(what.into())
    }

    /// An invalid text value of a type.
    pub fn invalid_text(ty: &str, text: &str) -> Self {
        let sqlstate = if ty.starts_with("timestamp") || ty == "date" || ty == "interval" {
            "22007"
        } else {
            "22P02"
        };
        Error::InvalidText {
            message: format!("invalid input syntax for type {ty}: \"{text}\""),
            sqlstate,
        }
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        match e {
            ArrowError::DivideByZero => Error::DivisionByZero,
            ArrowError::ArithmeticOverflow(m) => {
                Error::NumericOutOfRange(format!("value out of range: {m}"))
            }
            ArrowError::CastError(m) | ArrowError::ParseError(m) => {
                if m.contains("Overflow") || m.contains("overflow") || m.contains("out of range") {
                    Error::NumericOutOfRange(format!("value out of range: {m}"))
                } else {
                    Error::InvalidText {
                        message: m,
                        sqlstate: "22P02",
                    }
                }
            }
            ArrowError::MemoryError(m) => Error::ResourcesExhausted(m),
            other => Error::Internal(other.to_string()),
        }
    }
}
