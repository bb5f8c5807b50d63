//! The logical plan: a closed enum of relational operators over bound expressions.
//! Every node knows its output schema; the binder checks types so the executor can
//! trust them.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit};
use sluice_storage::Table;

/// One output column of a plan node.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanField {
    /// Table name or alias the column can be qualified with.
    pub qualifier: Option<String>,
    /// Column name.
    pub name: String,
    /// Type.
    pub data_type: DataType,
    /// Left out of `*` and of unqualified name lookup: the two key columns
    /// of `JOIN ... USING (k)`, which only `a.k` and `b.k` still name (the
    /// unqualified `k` is the merged column).
    pub hidden: bool,
}

/// The output columns of a plan node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanSchema {
    /// Columns in order.
    pub fields: Vec<PlanField>,
}

impl PlanSchema {
    /// The Arrow schema of the node's batches (all columns nullable).
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.fields
                .iter()
                .map(|f| Field::new(&f.name, f.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// The same columns under another qualifier (a table alias).
    pub fn requalified(&self, qualifier: &str) -> PlanSchema {
        PlanSchema {
            fields: self
                .fields
                .iter()
                .map(|f| PlanField {
                    qualifier: Some(qualifier.to_string()),
                    ..f.clone()
                })
                .collect(),
        }
    }
}

/// A constant: an Arrow array of one element.
#[derive(Clone, Debug)]
pub struct Literal {
    /// The value, as a one-row array.
    pub value: ArrayRef,
    /// True for a quoted string whose type is still open (PostgreSQL's "unknown"):
    /// the binder casts it to whatever type it is compared or combined with.
    pub untyped: bool,
    /// For a `$n` parameter being described (value not known yet): its position.
    pub param: Option<usize>,
}

impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        self.untyped == other.untyped && self.value.to_data() == other.value.to_data()
    }
}

impl Literal {
    /// The literal's type.
    pub fn data_type(&self) -> &DataType {
        self.value.data_type()
    }

    /// True for NULL.
    pub fn is_null(&self) -> bool {
        self.value.is_null(0)
    }
}

/// Binary operators after binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Multiply,
    /// `/`
    Divide,
    /// `%`
    Modulo,
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND` (three-valued)
    And,
    /// `OR` (three-valued)
    Or,
    /// `||` on text
    Concat,
    /// `IS DISTINCT FROM`
    IsDistinctFrom,
    /// `IS NOT DISTINCT FROM`
    IsNotDistinctFrom,
    /// `~`: POSIX regular expression match
    RegexMatch,
    /// `~*`: case-insensitive regular expression match
    RegexIMatch,
    /// `!~`
    RegexNotMatch,
    /// `!~*`
    RegexNotIMatch,
}

impl BinaryOp {
    /// True for operators that yield a boolean from two comparable operands.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
                | BinaryOp::IsDistinctFrom
                | BinaryOp::IsNotDistinctFrom
        )
    }

    /// The SQL spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Concat => "||",
            BinaryOp::IsDistinctFrom => "IS DISTINCT FROM",
            BinaryOp::IsNotDistinctFrom => "IS NOT DISTINCT FROM",
            BinaryOp::RegexMatch => "~",
            BinaryOp::RegexIMatch => "~*",
            BinaryOp::RegexNotMatch => "!~",
            BinaryOp::RegexNotIMatch => "!~*",
        }
    }

    /// The comparison with its operands swapped (`a < b` is `b > a`); `None`
    /// for an operator that is not a comparison.
    pub fn flipped(self) -> Option<BinaryOp> {
        Some(match self {
            BinaryOp::Lt => BinaryOp::Gt,
            BinaryOp::LtEq => BinaryOp::GtEq,
            BinaryOp::Gt => BinaryOp::Lt,
            BinaryOp::GtEq => BinaryOp::LtEq,
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::IsDistinctFrom
            | BinaryOp::IsNotDistinctFrom => self,
            _ => return None,
        })
    }

    /// True for the regular-expression operators.
    pub fn is_regex(self) -> bool {
        matches!(
            self,
            BinaryOp::RegexMatch
                | BinaryOp::RegexIMatch
                | BinaryOp::RegexNotMatch
                | BinaryOp::RegexNotIMatch
        )
    }
}

/// A field of a timestamp or interval for EXTRACT, date_part and date_trunc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateField {
    /// Microseconds (for EXTRACT: seconds field in microseconds).
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Second,
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Day of month.
    Day,
    /// ISO week.
    Week,
    /// Month.
    Month,
    /// Quarter.
    Quarter,
    /// Year.
    Year,
    /// Decade.
    Decade,
    /// Century.
    Century,
    /// Millennium.
    Millennium,
    /// Day of week, Sunday = 0.
    Dow,
    /// Day of week, Monday = 1 .. Sunday = 7.
    IsoDow,
    /// Day of year.
    Doy,
    /// ISO 8601 week-numbering year.
    IsoYear,
    /// Seconds since the epoch.
    Epoch,
}

impl DateField {
    /// Parses a field name as PostgreSQL accepts it (any case, singular or plural).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().trim_end_matches('s') {
            "microsecond" | "us" | "usec" => DateField::Microseconds,
            "millisecond" | "ms" | "msec" => DateField::Milliseconds,
            "second" | "sec" => DateField::Second,
            "minute" | "min" => DateField::Minute,
            "hour" | "h" | "hr" => DateField::Hour,
            "day" | "d" => DateField::Day,
            "week" | "w" => DateField::Week,
            "month" | "mon" => DateField::Month,
            "quarter" | "qtr" => DateField::Quarter,
            "year" | "y" | "yr" => DateField::Year,
            "decade" => DateField::Decade,
            "century" | "centurie" => DateField::Century,
            "millennium" | "millenium" | "millennia" => DateField::Millennium,
            "dow" => DateField::Dow,
            "isodow" => DateField::IsoDow,
            "doy" => DateField::Doy,
            "isoyear" => DateField::IsoYear,
            "epoch" => DateField::Epoch,
            _ => return None,
        })
    }

    /// The decimals of `EXTRACT`'s numeric result for this field.
    pub fn extract_scale(self) -> i8 {
        match self {
            DateField::Second | DateField::Epoch => 6,
            DateField::Milliseconds => 3,
            _ => 0,
        }
    }

    /// True for fields with a fractional part (seconds, milliseconds, epoch).
    pub fn is_fractional(self) -> bool {
        matches!(
            self,
            DateField::Second | DateField::Milliseconds | DateField::Epoch
        )
    }
}

/// Scalar functions after binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarFunction {
    /// lower(text)
    Lower,
    /// upper(text)
    Upper,
    /// length(text) in characters
    Length,
    /// concat(any...), NULLs ignored
    Concat,
    /// substring(text, from [, for]) in characters, 1-based
    Substring,
    /// trim/btrim(text [, chars])
    Trim,
    /// ltrim(text [, chars])
    LTrim,
    /// rtrim(text [, chars])
    RTrim,
    /// replace(text, from, to)
    Replace,
    /// left(text, n)
    Left,
    /// right(text, n)
    Right,
    /// coalesce(any...)
    Coalesce,
    /// nullif(a, b)
    NullIf,
    /// greatest(any...)
    Greatest,
    /// least(any...)
    Least,
    /// abs(number)
    Abs,
    /// round(number [, digits])
    Round,
    /// floor(number)
    Floor,
    /// ceil(number)
    Ceil,
    /// date_trunc(unit, timestamp)
    DateTrunc,
    /// EXTRACT(field FROM timestamp|interval): bigint, or double for fractional fields
    Extract(DateField),
    /// date_part(text, timestamp|interval): double
    DatePart(DateField),
    /// to_timestamp(double seconds since epoch)
    ToTimestamp,
    /// `ARRAY[a, b, ...]`: a list of the items' (common) type
    MakeArray,
    /// `array[i]` on a list, counting from 1: the element type
    ArraySubscript,
    /// A function over Sluice's catalog, for PostgreSQL clients.
    Catalog(CatalogFunction),
    /// One overload of a function of the built-in table ([`crate::builtins`]).
    Builtin(&'static crate::builtins::Builtin),
}

/// Functions that PostgreSQL clients call on catalog OIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogFunction {
    /// format_type(type_oid, typmod): the type's SQL name
    FormatType,
    /// pg_table_is_visible(oid): true
    TableIsVisible,
    /// pg_get_userbyid(oid): the user's name
    GetUserById,
    /// pg_encoding_to_char(int): 'UTF8'
    EncodingToChar,
    /// has_*_privilege(...): true (every user may do everything)
    HasPrivilege,
    /// obj_description, col_description, shobj_description, pg_get_expr,
    /// pg_get_viewdef: NULL (Sluice keeps no comments, defaults or views)
    NullText,
    /// pg_get_constraintdef(oid [, pretty])
    ConstraintDef,
    /// pg_get_indexdef(oid [, col, pretty])
    IndexDef,
    /// quote_ident(text)
    QuoteIdent,
    /// `'name'::regclass`: a table's OID by name
    RegclassOid,
    /// `'name'::regtype`: a type's OID by name
    RegtypeOid,
    /// to_regclass(text): a table's OID, NULL if there is none
    ToRegclass,
    /// json_build_object(key, value, ...): JSON text
    JsonBuildObject,
    /// to_regtype(text): a type's OID, NULL if there is none
    ToRegtype,
    /// pg_relation_size / pg_total_relation_size / pg_table_size: bytes (0: in memory)
    RelationSize,
    /// pg_size_pretty(bigint)
    SizePretty,
    /// pg_cancel_backend(pid), bound with the caller's user and whether it is
    /// an admin: true when the session exists and the caller may signal it
    CancelBackend,
    /// pg_terminate_backend(pid), as [`CatalogFunction::CancelBackend`]
    TerminateBackend,
    /// array_to_string(array, separator), over arrays in their text form
    ArrayToString,
    /// `x = ANY(array)` for an array in its text form (not a constant)
    ArrayContains,
    /// array_upper(array, dim) / array_length / cardinality over the text form
    ArrayLength,
    /// array_lower(array, dim): 1 for a non-empty array
    ArrayLower,
    /// `array[i]` over the text form: the element as text
    ArrayElement,
    /// pg_relation_is_publishable(oid) and other predicates that are always false here
    AlwaysFalse,
    /// string_to_array(text, separator): an array in text form
    StringToArray,
    /// parse_ident(text): the parts of a qualified name, as an array in text form
    ParseIdent,
}

impl ScalarFunction {
    /// The function's SQL name, used for output column names and EXPLAIN.
    pub fn name(self) -> &'static str {
        match self {
            ScalarFunction::Lower => "lower",
            ScalarFunction::Upper => "upper",
            ScalarFunction::Length => "length",
            ScalarFunction::Concat => "concat",
            ScalarFunction::Substring => "substring",
            ScalarFunction::Trim => "btrim",
            ScalarFunction::LTrim => "ltrim",
            ScalarFunction::RTrim => "rtrim",
            ScalarFunction::Replace => "replace",
            ScalarFunction::Left => "left",
            ScalarFunction::Right => "right",
            ScalarFunction::Coalesce => "coalesce",
            ScalarFunction::NullIf => "nullif",
            ScalarFunction::Greatest => "greatest",
            ScalarFunction::Least => "least",
            ScalarFunction::Abs => "abs",
            ScalarFunction::Round => "round",
            ScalarFunction::Floor => "floor",
            ScalarFunction::Ceil => "ceil",
            ScalarFunction::DateTrunc => "date_trunc",
            ScalarFunction::Extract(_) => "extract",
            ScalarFunction::DatePart(_) => "date_part",
            ScalarFunction::ToTimestamp => "to_timestamp",
            ScalarFunction::MakeArray => "array",
            ScalarFunction::ArraySubscript => "array_subscript",
            ScalarFunction::Builtin(b) => b.name,
            ScalarFunction::Catalog(f) => match f {
                CatalogFunction::FormatType => "format_type",
                CatalogFunction::TableIsVisible => "pg_table_is_visible",
                CatalogFunction::GetUserById => "pg_get_userbyid",
                CatalogFunction::EncodingToChar => "pg_encoding_to_char",
                CatalogFunction::HasPrivilege => "has_table_privilege",
                CatalogFunction::NullText => "obj_description",
                CatalogFunction::ConstraintDef => "pg_get_constraintdef",
                CatalogFunction::IndexDef => "pg_get_indexdef",
                CatalogFunction::QuoteIdent => "quote_ident",
                CatalogFunction::RegclassOid => "regclass",
                CatalogFunction::RegtypeOid => "regtype",
                CatalogFunction::ToRegclass => "to_regclass",
                CatalogFunction::JsonBuildObject => "json_build_object",
                CatalogFunction::ToRegtype => "to_regtype",
                CatalogFunction::RelationSize => "pg_relation_size",
                CatalogFunction::SizePretty => "pg_size_pretty",
                CatalogFunction::CancelBackend => "pg_cancel_backend",
                CatalogFunction::TerminateBackend => "pg_terminate_backend",
                CatalogFunction::ArrayToString => "array_to_string",
                CatalogFunction::ArrayContains => "any",
                CatalogFunction::ArrayLength => "array_upper",
                CatalogFunction::ArrayLower => "array_lower",
                CatalogFunction::ArrayElement => "array_element",
                CatalogFunction::AlwaysFalse => "pg_relation_is_publishable",
                CatalogFunction::StringToArray => "string_to_array",
                CatalogFunction::ParseIdent => "parse_ident",
            },
        }
    }
}

/// Aggregate functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AggregateFunction {
    /// COUNT(*)
    CountStar,
    /// COUNT(x): non-null values
    Count,
    /// SUM(x)
    Sum,
    /// AVG(x)
    Avg,
    /// MIN(x)
    Min,
    /// MAX(x)
    Max,
    /// approx_count_distinct(x): HyperLogLog
    ApproxCountDistinct,
    /// percentile_cont(f) WITHIN GROUP (ORDER BY x): exact, interpolated
    PercentileCont(f64),
    /// percentile_disc(f) WITHIN GROUP (ORDER BY x): the first value at or
    /// past the fraction
    PercentileDisc(f64),
    /// mode() WITHIN GROUP (ORDER BY x): the most frequent value, the smallest
    /// of equally frequent ones
    Mode,
    /// grouping(x): 1 in the rows of a grouping set that leaves x out, else 0
    /// (a constant per set, filled in by the grouping-sets plan)
    Grouping,
    /// var_samp / var_pop / stddev_samp / stddev_pop (stddev and variance are
    /// the sample ones)
    Variance {
        /// Divide by n - 1 (sample) rather than n (population).
        sample: bool,
        /// Return the square root (standard deviation).
        sqrt: bool,
    },
    /// approx_percentile(x, f): t-digest
    ApproxPercentile(f64),
    /// bool_and(x)
    BoolAnd,
    /// bool_or(x)
    BoolOr,
    /// string_agg(x, separator)
    StringAgg,
    /// array_agg(x), as PostgreSQL's array text form
    ArrayAgg,
}

impl AggregateFunction {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::CountStar | AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Avg => "avg",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
            AggregateFunction::ApproxCountDistinct => "approx_count_distinct",
            AggregateFunction::PercentileCont(_) => "percentile_cont",
            AggregateFunction::PercentileDisc(_) => "percentile_disc",
            AggregateFunction::Grouping => "grouping",
            AggregateFunction::Mode => "mode",
            AggregateFunction::Variance { sample, sqrt } => match (sample, sqrt) {
                (true, true) => "stddev_samp",
                (false, true) => "stddev_pop",
                (true, false) => "var_samp",
                (false, false) => "var_pop",
            },
            AggregateFunction::ApproxPercentile(_) => "approx_percentile",
            AggregateFunction::BoolAnd => "bool_and",
            AggregateFunction::BoolOr => "bool_or",
            AggregateFunction::StringAgg => "string_agg",
            AggregateFunction::ArrayAgg => "array_agg",
        }
    }

    /// The result type for an argument of type `arg` (ignored for COUNT(*)).
    pub fn return_type(self, arg: Option<&DataType>) -> DataType {
        match self {
            AggregateFunction::CountStar
            | AggregateFunction::Count
            | AggregateFunction::ApproxCountDistinct => DataType::Int64,
            // PostgreSQL: sum(int) is bigint, sum(bigint) and sum(numeric)
            // numeric; avg and the variances of integers and numerics are
            // numeric, of doubles double.
            AggregateFunction::Sum => match arg {
                Some(DataType::Float64) => DataType::Float64,
                Some(DataType::Interval(u)) => DataType::Interval(*u),
                Some(DataType::Int64) => crate::numeric::numeric(0),
                Some(DataType::Decimal128(_, s)) => crate::numeric::numeric(*s),
                _ => DataType::Int64,
            },
            AggregateFunction::Avg | AggregateFunction::Variance { .. } => match arg {
                Some(DataType::Int32 | DataType::Int64) => {
                    crate::numeric::numeric(crate::numeric::DIVISION_SCALE)
                }
                Some(DataType::Decimal128(_, s)) => {
                    crate::numeric::numeric((*s).max(crate::numeric::DIVISION_SCALE))
                }
                Some(DataType::Interval(u)) => DataType::Interval(*u),
                _ => DataType::Float64,
            },
            AggregateFunction::PercentileCont(_) | AggregateFunction::ApproxPercentile(_) => {
                DataType::Float64
            }
            AggregateFunction::Min
            | AggregateFunction::Max
            | AggregateFunction::Mode
            | AggregateFunction::PercentileDisc(_) => arg.cloned().unwrap_or(DataType::Null),
            AggregateFunction::BoolAnd | AggregateFunction::BoolOr => DataType::Boolean,
            AggregateFunction::Grouping => DataType::Int32,
            AggregateFunction::StringAgg => DataType::Utf8,
            // array_agg(x) is x's type's array; of an untyped NULL, text[].
            AggregateFunction::ArrayAgg => crate::array::list_type(&match arg {
                Some(DataType::Dictionary(_, v)) => (**v).clone(),
                Some(DataType::Null) | None => DataType::Utf8,
                Some(t) => t.clone(),
            }),
        }
    }
}

/// An aggregate call: function, argument (none for COUNT(*)) and DISTINCT.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateExpr {
    /// The function.
    pub func: AggregateFunction,
    /// The argument, over the aggregate's input.
    pub arg: Option<Expr>,
    /// `COUNT(DISTINCT x)`.
    pub distinct: bool,
    /// The separator of `string_agg(x, sep)`.
    pub separator: Option<String>,
}

/// A bound expression. Column references are positions in the input schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// The input column at this position.
    Column(usize),
    /// A constant.
    Literal(Literal),
    /// `left op right`.
    Binary {
        /// Operator.
        op: BinaryOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `NOT e` (three-valued).
    Not(Box<Expr>),
    /// `-e`.
    Negate(Box<Expr>),
    /// `e IS [NOT] NULL`.
    IsNull {
        /// Operand.
        expr: Box<Expr>,
        /// IS NOT NULL.
        negated: bool,
    },
    /// `e [NOT] [I]LIKE pattern`.
    Like {
        /// Operand.
        expr: Box<Expr>,
        /// Pattern.
        pattern: Box<Expr>,
        /// NOT LIKE.
        negated: bool,
        /// ILIKE.
        case_insensitive: bool,
    },
    /// `e [NOT] IN (list)`.
    InList {
        /// Operand.
        expr: Box<Expr>,
        /// Candidates, of the operand's type.
        list: Vec<Expr>,
        /// NOT IN.
        negated: bool,
    },
    /// `CASE WHEN c THEN r ... [ELSE e] END`; a branch is evaluated only on its rows.
    Case {
        /// (condition, result) pairs.
        branches: Vec<(Expr, Expr)>,
        /// ELSE result (NULL if absent).
        else_expr: Option<Box<Expr>>,
    },
    /// `CAST(e AS type)`.
    Cast {
        /// Operand.
        expr: Box<Expr>,
        /// Target type.
        to: DataType,
    },
    /// A scalar function call.
    Function {
        /// Function.
        func: ScalarFunction,
        /// Arguments, already coerced.
        args: Vec<Expr>,
    },
    /// An aggregate call; only exists while binding a SELECT, before the aggregate
    /// node is built.
    Aggregate(Box<AggregateExpr>),
    /// A subquery used as a value: scalar, EXISTS or IN.
    Subquery {
        /// How its rows become a value.
        kind: SubqueryKind,
        /// The subquery; it may read the enclosing row through [`Expr::OuterColumn`].
        plan: SubqueryPlan,
    },
    /// A window function call; only exists while binding a SELECT, before the
    /// Window node is built.
    Window(Box<WindowExpr>),
    /// Inside a correlated subquery: a column of the enclosing query's current row.
    OuterColumn {
        /// Position in the enclosing query's input.
        index: usize,
        /// Its type.
        data_type: DataType,
    },
    /// In a prepared statement's reused plan: a value each execution supplies
    /// (a `$n` parameter, the statement's time, a retention cutoff; see
    /// [`crate::reuse`]). Every one is replaced by a literal before the plan
    /// runs, so nothing evaluates it.
    Slot {
        /// Its position in the plan's list of slots.
        index: usize,
        /// The type of the value it takes.
        data_type: DataType,
    },
}

/// A window function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WindowFunction {
    /// row_number()
    RowNumber,
    /// rank()
    Rank,
    /// dense_rank()
    DenseRank,
    /// percent_rank(): (rank - 1) / (partition rows - 1)
    PercentRank,
    /// cume_dist(): rows up to the current row's last peer / partition rows
    CumeDist,
    /// ntile(n): the bucket, of n as even as can be, that holds the row
    Ntile(i64),
    /// lag(x, offset, default): x `offset` rows before, in the partition
    Lag(i64),
    /// lead(x, offset, default): x `offset` rows after, in the partition
    Lead(i64),
    /// first_value(x) in the frame
    FirstValue,
    /// last_value(x) in the frame
    LastValue,
    /// nth_value(x, n) in the frame
    NthValue(i64),
    /// An aggregate over the frame.
    Aggregate(AggregateFunction),
}

impl WindowFunction {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            WindowFunction::RowNumber => "row_number",
            WindowFunction::Rank => "rank",
            WindowFunction::DenseRank => "dense_rank",
            WindowFunction::PercentRank => "percent_rank",
            WindowFunction::CumeDist => "cume_dist",
            WindowFunction::Ntile(_) => "ntile",
            WindowFunction::Lag(_) => "lag",
            WindowFunction::Lead(_) => "lead",
            WindowFunction::FirstValue => "first_value",
            WindowFunction::LastValue => "last_value",
            WindowFunction::NthValue(_) => "nth_value",
            WindowFunction::Aggregate(f) => f.name(),
        }
    }
}

/// Where a window frame starts or ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrameBound {
    /// The partition's first row.
    UnboundedPreceding,
    /// `n PRECEDING` (ROWS: n rows back).
    Preceding(u64),
    /// The current row (with RANGE: its first or last peer).
    CurrentRow,
    /// `n FOLLOWING` (ROWS: n rows on).
    Following(u64),
    /// The partition's last row.
    UnboundedFollowing,
    /// `offset PRECEDING` in a RANGE frame: the rows whose ORDER BY value is
    /// at most `offset` before the current row's.
    RangePreceding(RangeOffset),
    /// `offset FOLLOWING` in a RANGE frame: at most `offset` after.
    RangeFollowing(RangeOffset),
}

/// How far a RANGE frame reaches from the current row's ORDER BY value: a
/// number for a numeric key, an interval for a timestamp or date key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeOffset {
    /// For numeric keys.
    Number(f64),
    /// For timestamp and date keys (months and days on the calendar).
    Interval(sluice_storage::Interval),
}

/// A window frame: `ROWS` counts rows, `RANGE` takes the current row's peers
/// with it, or reaches an offset from its ORDER BY value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowFrame {
    /// ROWS rather than RANGE.
    pub rows: bool,
    /// Start.
    pub start: FrameBound,
    /// End.
    pub end: FrameBound,
}

/// `func(arg) OVER (PARTITION BY ... ORDER BY ... [frame])`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowExpr {
    /// The function.
    pub func: WindowFunction,
    /// Its argument (none for ranking functions and COUNT(*)).
    pub arg: Option<Expr>,
    /// lag's and lead's value where there is no such row (NULL if absent).
    pub default: Option<Expr>,
    /// PARTITION BY.
    pub partition_by: Vec<Expr>,
    /// ORDER BY.
    pub order_by: Vec<SortKey>,
    /// The frame, if the query gave one (else PostgreSQL's default: RANGE
    /// UNBOUNDED PRECEDING to CURRENT ROW with ORDER BY, the whole
    /// partition without).
    pub frame: Option<WindowFrame>,
}

impl WindowExpr {
    /// The result type over `input`.
    pub fn data_type(&self, input: &PlanSchema) -> DataType {
        let arg = || {
            self.arg
                .as_ref()
                .map_or(DataType::Null, |a| a.data_type(input))
        };
        match self.func {
            WindowFunction::RowNumber | WindowFunction::Rank | WindowFunction::DenseRank => {
                DataType::Int64
            }
            WindowFunction::Ntile(_) => DataType::Int32,
            WindowFunction::PercentRank | WindowFunction::CumeDist => DataType::Float64,
            WindowFunction::Lag(_)
            | WindowFunction::Lead(_)
            | WindowFunction::FirstValue
            | WindowFunction::LastValue
            | WindowFunction::NthValue(_) => arg(),
            WindowFunction::Aggregate(f) => {
                f.return_type(self.arg.as_ref().map(|a| a.data_type(input)).as_ref())
            }
        }
    }

    /// The same window with `t` applied to each of its expressions.
    pub fn map(&self, t: &mut dyn FnMut(&Expr) -> Expr) -> WindowExpr {
        WindowExpr {
            func: self.func,
            arg: self.arg.as_ref().map(&mut *t),
            default: self.default.as_ref().map(&mut *t),
            partition_by: self.partition_by.iter().map(&mut *t).collect(),
            order_by: self
                .order_by
                .iter()
                .map(|k| SortKey {
                    expr: t(&k.expr),
                    descending: k.descending,
                    nulls_first: k.nulls_first,
                })
                .collect(),
            frame: self.frame,
        }
    }
}

/// How a subquery's rows become a value.
#[derive(Clone, Debug, PartialEq)]
pub enum SubqueryKind {
    /// `(SELECT x ...)`: its single value, NULL without rows, an error with several.
    Scalar,
    /// `[NOT] EXISTS (...)`.
    Exists {
        /// NOT EXISTS.
        negated: bool,
    },
    /// `ARRAY(SELECT x ...)`: the values in PostgreSQL's array text form `{a,b}`.
    Array,
    /// `expr [NOT] IN (SELECT x ...)`, also `= ANY (SELECT ...)`.
    In {
        /// The value looked up.
        expr: Box<Expr>,
        /// NOT IN.
        negated: bool,
    },
}

/// A subquery's plan, shared; two are equal only if they are the same plan.
#[derive(Clone, Debug)]
pub struct SubqueryPlan(pub Arc<LogicalPlan>);

impl PartialEq for SubqueryPlan {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Expr {
    /// A non-null literal from a one-row array.
    pub fn literal(value: ArrayRef) -> Expr {
        Expr::Literal(Literal {
            value,
            untyped: false,
            param: None,
        })
    }

    /// The expression's result type over `input`.
    pub fn data_type(&self, input: &PlanSchema) -> DataType {
        crate::binder::grow_stack(|| self.data_type_nested(input))
    }

    fn data_type_nested(&self, input: &PlanSchema) -> DataType {
        match self {
            Expr::Column(i) => input
                .fields
                .get(*i)
                .map_or(DataType::Null, |f| f.data_type.clone()),
            Expr::Literal(l) => l.data_type().clone(),
            Expr::Binary { op, left, right } => {
                if op.is_comparison() || op.is_regex() || matches!(op, BinaryOp::And | BinaryOp::Or)
                {
                    return DataType::Boolean;
                }
                if *op == BinaryOp::Concat {
                    return DataType::Utf8;
                }
                let (l, r) = (left.data_type(input), right.data_type(input));
                arithmetic_result_type(*op, &l, &r).unwrap_or(l)
            }
            Expr::Not(_) | Expr::IsNull { .. } | Expr::Like { .. } | Expr::InList { .. } => {
                DataType::Boolean
            }
            Expr::Negate(e) => e.data_type(input),
            Expr::Case {
                branches,
                else_expr,
            } => branches
                .iter()
                .map(|(_, r)| r.data_type(input))
                .chain(else_expr.iter().map(|e| e.data_type(input)))
                .find(|t| *t != DataType::Null)
                .unwrap_or(DataType::Null),
            Expr::Cast { to, .. } => to.clone(),
            Expr::Function { func, args } => function_return_type(*func, args, input),
            Expr::Aggregate(a) => a
                .func
                .return_type(a.arg.as_ref().map(|e| e.data_type(input)).as_ref()),
            Expr::Subquery { kind, plan } => match kind {
                SubqueryKind::Array => crate::subquery::array_type(&plan.0),
                SubqueryKind::Scalar => plan
                    .0
                    .schema()
                    .fields
                    .first()
                    .map_or(DataType::Null, |f| f.data_type.clone()),
                _ => DataType::Boolean,
            },
            Expr::OuterColumn { data_type, .. } | Expr::Slot { data_type, .. } => data_type.clone(),
            Expr::Window(w) => w.data_type(input),
        }
    }

    /// Calls `f` on this expression and every sub-expression, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        crate::binder::grow_stack(|| self.walk_nested(f))
    }

    fn walk_nested(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Column(_) | Expr::Literal(_) | Expr::OuterColumn { .. } | Expr::Slot { .. } => {}
            Expr::Window(w) => {
                w.arg.iter().for_each(|e| e.walk(f));
                w.default.iter().for_each(|e| e.walk(f));
                w.partition_by.iter().for_each(|e| e.walk(f));
                w.order_by.iter().for_each(|k| k.expr.walk(f));
            }
            // The subquery's own plan is not walked: its columns are not ours.
            Expr::Subquery { kind, .. } => {
                if let SubqueryKind::In { expr, .. } = kind {
                    expr.walk(f);
                }
            }
            Expr::Binary { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            Expr::Not(e) | Expr::Negate(e) | Expr::IsNull { expr: e, .. } => e.walk(f),
            Expr::Cast { expr, .. } => expr.walk(f),
            Expr::Like { expr, pattern, .. } => {
                expr.walk(f);
                pattern.walk(f);
            }
            Expr::InList { expr, list, .. } => {
                expr.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            Expr::Case {
                branches,
                else_expr,
            } => {
                for (c, r) in branches {
                    c.walk(f);
                    r.walk(f);
                }
                if let Some(e) = else_expr {
                    e.walk(f);
                }
            }
            Expr::Function { args, .. } => args.iter().for_each(|e| e.walk(f)),
            Expr::Aggregate(a) => {
                if let Some(e) = &a.arg {
                    e.walk(f)
                }
            }
        }
    }

    /// The input columns this expression reads, sorted and deduplicated.
    pub fn columns(&self) -> Vec<usize> {
        let mut cols = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Column(i) = e {
                cols.push(*i);
            }
        });
        cols.sort_unstable();
        cols.dedup();
        cols
    }

    /// True if the expression contains a subquery (the scan fast path then steps
    /// aside: a correlated subquery reads columns the scan cannot see).
    pub fn has_subquery(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Subquery { .. }));
        found
    }

    /// True if the expression contains a subquery that reads the enclosing
    /// query's row ([`Expr::OuterColumn`], by position): the columns below
    /// it must then stay where they are.
    pub fn has_correlated_subquery(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| {
            if let Expr::Subquery { plan, .. } = e {
                found |= plan.0.is_correlated();
            }
        });
        found
    }

    /// True if the expression contains an aggregate call.
    pub fn has_aggregate(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Aggregate(_)));
        found
    }

    /// Rewrites column references with `map` (old position -> new position).
    pub fn remap_columns(&self, map: &dyn Fn(usize) -> usize) -> Expr {
        self.transform(&mut |e| match e {
            Expr::Column(i) => Some(Expr::Column(map(*i))),
            _ => None,
        })
    }

    /// Rebuilds the expression bottom-up except where `f` returns a replacement
    /// (which is used as is, without descending into it).
    pub fn transform(&self, f: &mut dyn FnMut(&Expr) -> Option<Expr>) -> Expr {
        crate::binder::grow_stack(|| self.transform_nested(f))
    }

    fn transform_nested(&self, f: &mut dyn FnMut(&Expr) -> Option<Expr>) -> Expr {
        if let Some(replaced) = f(self) {
            return replaced;
        }
        let mut t = |e: &Expr| Box::new(e.transform(f));
        match self {
            Expr::Column(_) | Expr::Literal(_) | Expr::OuterColumn { .. } | Expr::Slot { .. } => {
                self.clone()
            }
            Expr::Window(w) => Expr::Window(Box::new(w.map(&mut |e| *t(e)))),
            Expr::Subquery { kind, plan } => Expr::Subquery {
                kind: match kind {
                    SubqueryKind::In { expr, negated } => SubqueryKind::In {
                        expr: t(expr),
                        negated: *negated,
                    },
                    other => other.clone(),
                },
                plan: plan.clone(),
            },
            Expr::Binary { op, left, right } => Expr::Binary {
                op: *op,
                left: t(left),
                right: t(right),
            },
            Expr::Not(e) => Expr::Not(t(e)),
            Expr::Negate(e) => Expr::Negate(t(e)),
            Expr::IsNull { expr, negated } => Expr::IsNull {
                expr: t(expr),
                negated: *negated,
            },
            Expr::Cast { expr, to } => Expr::Cast {
                expr: t(expr),
                to: to.clone(),
            },
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => Expr::Like {
                expr: t(expr),
                pattern: t(pattern),
                negated: *negated,
                case_insensitive: *case_insensitive,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: t(expr),
                list: list.iter().map(|e| *t(e)).collect(),
                negated: *negated,
            },
            Expr::Case {
                branches,
                else_expr,
            } => Expr::Case {
                branches: branches.iter().map(|(c, r)| (*t(c), *t(r))).collect(),
                else_expr: else_expr.as_ref().map(|e| t(e)),
            },
            Expr::Function { func, args } => Expr::Function {
                func: *func,
                args: args.iter().map(|e| *t(e)).collect(),
            },
            Expr::Aggregate(a) => Expr::Aggregate(Box::new(AggregateExpr {
                func: a.func,
                arg: a.arg.as_ref().map(|e| *t(e)),
                distinct: a.distinct,
                separator: a.separator.clone(),
            })),
        }
    }
}

impl Expr {
    /// The expression as SQL-like text with column names from `input` (for EXPLAIN).
    pub fn display(&self, input: &PlanSchema) -> String {
        crate::binder::grow_stack(|| self.display_nested(input))
    }

    fn display_nested(&self, input: &PlanSchema) -> String {
        let d = |e: &Expr| e.display(input);
        let list = |es: &[Expr]| {
            es.iter()
                .map(|e| e.display(input))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Expr::Column(i) => input
                .fields
                .get(*i)
                .map_or(format!("#{i}"), |f| f.name.clone()),
            Expr::Literal(l) => match crate::format::format_value(
                l.value.as_ref(),
                0,
                sluice_storage::zone::Zone::UTC,
            ) {
                Ok(None) => "NULL".into(),
                Ok(Some(t))
                    if matches!(
                        l.data_type(),
                        DataType::Utf8
                            | DataType::Timestamp(..)
                            | DataType::Interval(_)
                            | DataType::Date32
                    ) =>
                {
                    format!("'{t}'")
                }
                Ok(Some(t)) => t,
                Err(_) => "?".into(),
            },
            Expr::Binary { op, left, right } => {
                format!("({} {} {})", d(left), op.symbol(), d(right))
            }
            Expr::Not(e) => format!("NOT {}", d(e)),
            Expr::Negate(e) => format!("-{}", d(e)),
            Expr::IsNull { expr, negated } => {
                format!("{} IS {}NULL", d(expr), if *negated { "NOT " } else { "" })
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => format!(
                "{} {}{} {}",
                d(expr),
                if *negated { "NOT " } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" },
                d(pattern)
            ),
            Expr::InList {
                expr,
                list: l,
                negated,
            } => {
                format!(
                    "{} {}IN ({})",
                    d(expr),
                    if *negated { "NOT " } else { "" },
                    list(l)
                )
            }
            Expr::Case {
                branches,
                else_expr,
            } => {
                let mut s = "CASE".to_string();
                for (c, r) in branches {
                    s.push_str(&format!(" WHEN {} THEN {}", d(c), d(r)));
                }
                if let Some(e) = else_expr {
                    s.push_str(&format!(" ELSE {}", d(e)));
                }
                s + " END"
            }
            Expr::Cast { expr, to } => {
                format!("CAST({} AS {})", d(expr), crate::format::sql_type_name(to))
            }
            Expr::Function { func, args } => format!("{}({})", func.name(), list(args)),
            Expr::Aggregate(a) => a.display(input),
            Expr::Subquery { kind, .. } => match kind {
                SubqueryKind::Scalar => "(subquery)".into(),
                SubqueryKind::Array => "ARRAY(subquery)".into(),
                SubqueryKind::Exists { negated } => {
                    format!("{}EXISTS (subquery)", if *negated { "NOT " } else { "" })
                }
                SubqueryKind::In { expr, negated } => {
                    format!(
                        "{} {}IN (subquery)",
                        d(expr),
                        if *negated { "NOT " } else { "" }
                    )
                }
            },
            Expr::OuterColumn { index, .. } => format!("outer.#{index}"),
            Expr::Slot { index, .. } => format!("slot#{index}"),
            Expr::Window(w) => format!(
                "{:?}({}) OVER (PARTITION BY {} ORDER BY {})",
                w.func,
                w.arg.as_ref().map_or(String::new(), d),
                list(&w.partition_by),
                w.order_by
                    .iter()
                    .map(|k| d(&k.expr))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl AggregateExpr {
    /// The call as SQL-like text (for EXPLAIN).
    pub fn display(&self, input: &PlanSchema) -> String {
        match &self.arg {
            None => format!("{}(*)", self.func.name()),
            Some(a) => format!(
                "{}({}{})",
                self.func.name(),
                if self.distinct { "DISTINCT " } else { "" },
                a.display(input)
            ),
        }
    }
}

/// The result type of arithmetic, or `None` if the operator does not apply.
pub fn arithmetic_result_type(op: BinaryOp, l: &DataType, r: &DataType) -> Option<DataType> {
    use DataType::*;
    let interval = Interval(IntervalUnit::MonthDayNano);
    match (op, l, r) {
        (_, Null, other) | (_, other, Null) => Some(other.clone()),
        (
            BinaryOp::Minus,
            Timestamp(TimeUnit::Microsecond, _),
            Timestamp(TimeUnit::Microsecond, _),
        ) => Some(interval),
        (BinaryOp::Plus | BinaryOp::Minus, Timestamp(u, tz), Interval(_)) => {
            Some(Timestamp(*u, tz.clone()))
        }
        (BinaryOp::Plus, Interval(_), Timestamp(u, tz)) => Some(Timestamp(*u, tz.clone())),
        (BinaryOp::Plus | BinaryOp::Minus, Date32, Int32 | Int64) => Some(Date32),
        (BinaryOp::Plus | BinaryOp::Minus, Date32, Interval(_))
        | (BinaryOp::Plus, Interval(_), Date32) => Some(Timestamp(TimeUnit::Microsecond, None)),
        (BinaryOp::Minus, Date32, Date32) => Some(Int32),
        (BinaryOp::Plus | BinaryOp::Minus, Interval(_), Interval(_)) => Some(interval),
        (
            BinaryOp::Multiply | BinaryOp::Divide,
            Interval(_),
            Int32 | Int64 | Float64 | Decimal128(..),
        ) => Some(interval),
        (BinaryOp::Multiply, Int32 | Int64 | Float64 | Decimal128(..), Interval(_)) => {
            Some(interval)
        }
        // numeric with numeric or an integer stays exact, with PostgreSQL's
        // result scale; with a double it is a double.
        (_, a, b)
            if is_numeric(a)
                && is_numeric(b)
                && (matches!(a, Decimal128(..)) || matches!(b, Decimal128(..)))
                && !matches!(a, Float64)
                && !matches!(b, Float64) =>
        {
            let op = match op {
                BinaryOp::Plus => crate::numeric::Op::Add,
                BinaryOp::Minus => crate::numeric::Op::Sub,
                BinaryOp::Multiply => crate::numeric::Op::Mul,
                BinaryOp::Divide => crate::numeric::Op::Div,
                BinaryOp::Modulo => crate::numeric::Op::Rem,
                _ => return None,
            };
            Some(crate::numeric::numeric(crate::numeric::result_scale(
                op,
                crate::numeric::scale_of(a),
                crate::numeric::scale_of(b),
            )))
        }
        (_, a, b) if is_numeric(a) && is_numeric(b) => Some(wider_numeric(a, b)),
        _ => None,
    }
}

/// True for the numeric types the engine computes with (`UInt32` is PostgreSQL's
/// `oid`, which compares with integers).
pub fn is_numeric(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int32
            | DataType::Int64
            | DataType::Float64
            | DataType::UInt32
            | DataType::Decimal128(..)
    )
}

/// The wider of two numeric types (int < bigint < double; an oid with another
/// integer type meets it as bigint).
pub fn wider_numeric(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        (DataType::Float64, _) | (_, DataType::Float64) => DataType::Float64,
        (DataType::Decimal128(..), _) | (_, DataType::Decimal128(..)) => {
            crate::numeric::numeric(crate::numeric::scale_of(a).max(crate::numeric::scale_of(b)))
        }
        (DataType::UInt32, DataType::UInt32) => DataType::UInt32,
        (DataType::Int64 | DataType::UInt32, _) | (_, DataType::Int64 | DataType::UInt32) => {
            DataType::Int64
        }
        _ => DataType::Int32,
    }
}

fn function_return_type(func: ScalarFunction, args: &[Expr], input: &PlanSchema) -> DataType {
    let first = || args.first().map_or(DataType::Null, |a| a.data_type(input));
    match func {
        ScalarFunction::Lower
        | ScalarFunction::Upper
        | ScalarFunction::Concat
        | ScalarFunction::Substring
        | ScalarFunction::Trim
        | ScalarFunction::LTrim
        | ScalarFunction::RTrim
        | ScalarFunction::Replace
        | ScalarFunction::Left
        | ScalarFunction::Right => DataType::Utf8,
        ScalarFunction::Length => DataType::Int32,
        ScalarFunction::Coalesce | ScalarFunction::Greatest | ScalarFunction::Least => args
            .iter()
            .map(|a| a.data_type(input))
            .find(|t| *t != DataType::Null)
            .unwrap_or(DataType::Null),
        ScalarFunction::Round => match first() {
            DataType::Decimal128(_, s) => match args.get(1) {
                None => crate::numeric::numeric(0),
                Some(Expr::Literal(l)) if !l.is_null() => {
                    let d = arrow::compute::cast(&l.value, &DataType::Int64)
                        .ok()
                        .map_or(0, |v| {
                            arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&v)
                                .value(0)
                        });
                    crate::numeric::numeric(d.clamp(0, crate::numeric::MAX_SCALE as i64) as i8)
                }
                Some(_) => crate::numeric::numeric(s),
            },
            other => other,
        },
        ScalarFunction::NullIf | ScalarFunction::Abs => first(),
        ScalarFunction::Floor | ScalarFunction::Ceil => match first() {
            DataType::Decimal128(..) => crate::numeric::numeric(0),
            other => other,
        },
        ScalarFunction::DateTrunc => args.get(1).map_or(DataType::Null, |a| a.data_type(input)),
        ScalarFunction::Extract(f) => crate::numeric::numeric(f.extract_scale()),
        ScalarFunction::DatePart(_) => DataType::Float64,
        ScalarFunction::Catalog(f) => match f {
            CatalogFunction::TableIsVisible
            | CatalogFunction::HasPrivilege
            | CatalogFunction::ArrayContains
            | CatalogFunction::CancelBackend
            | CatalogFunction::TerminateBackend
            | CatalogFunction::AlwaysFalse => DataType::Boolean,
            CatalogFunction::ArrayLength | CatalogFunction::ArrayLower => DataType::Int32,
            CatalogFunction::RegclassOid
            | CatalogFunction::ToRegclass
            | CatalogFunction::ToRegtype
            | CatalogFunction::RegtypeOid => DataType::UInt32,
            CatalogFunction::RelationSize => DataType::Int64,
            CatalogFunction::StringToArray => crate::array::list_type(&DataType::Utf8),
            _ => DataType::Utf8,
        },
        ScalarFunction::ToTimestamp => DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(sluice_storage::types::UTC.into()),
        ),
        ScalarFunction::Builtin(b) => b.returns.data_type(),
        ScalarFunction::MakeArray => crate::array::list_type(&match first() {
            DataType::Null => DataType::Utf8,
            t => t,
        }),
        ScalarFunction::ArraySubscript => crate::array::element_type(&first())
            .cloned()
            .unwrap_or(DataType::Utf8),
    }
}

/// How a join matches rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// Only matching pairs.
    Inner,
    /// Every left row, with NULLs where no right row matches.
    Left,
    /// Every row of both sides, with NULLs where the other has no match.
    Full,
}

/// One ORDER BY key over the input's columns.
#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    /// The key.
    pub expr: Expr,
    /// DESC.
    pub descending: bool,
    /// NULLS FIRST (PostgreSQL's default is NULLS LAST for ASC, FIRST for DESC).
    pub nulls_first: bool,
}

/// A table as a plan reads it.
#[derive(Clone)]
pub enum TableSource {
    /// A stored table, read through its segments.
    Stored(Arc<Table>),
    /// A catalog table (`pg_catalog`, `information_schema`), built when bound.
    Virtual {
        /// The table's name, for EXPLAIN.
        name: String,
        /// Its rows.
        batch: RecordBatch,
    },
}

impl TableSource {
    /// All the source's columns, unqualified (what a scan's filter is over).
    pub fn full_schema(&self) -> PlanSchema {
        let fields = match self {
            TableSource::Stored(t) => t
                .schema()
                .columns
                .iter()
                .map(|c| PlanField {
                    qualifier: None,
                    name: c.name.clone(),
                    data_type: c.ty.arrow_type(),
                    hidden: false,
                })
                .collect(),
            TableSource::Virtual { batch, .. } => batch
                .schema()
                .fields()
                .iter()
                .map(|f| PlanField {
                    qualifier: None,
                    name: f.name().clone(),
                    data_type: f.data_type().clone(),
                    hidden: false,
                })
                .collect(),
        };
        PlanSchema { fields }
    }
}

impl fmt::Debug for TableSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableSource::Stored(t) => write!(f, "Stored({})", t.name()),
            TableSource::Virtual { name, .. } => write!(f, "Virtual({name})"),
        }
    }
}

/// The logical plan.
#[derive(Clone, Debug)]
pub enum LogicalPlan {
    /// Rows of a table. The binder reads every column of every row; the
    /// optimizer ([`crate::optimize`]) narrows that to the columns the query
    /// uses, pushes the query's filters in (so the segments' zone maps and
    /// indexes prune with them), and sets a row limit when the rows above are
    /// cut by a LIMIT.
    Scan {
        /// The table.
        source: TableSource,
        /// The columns read, qualified by the table name or alias.
        schema: PlanSchema,
        /// The table column behind each output column.
        projection: Vec<usize>,
        /// Only rows where this holds; over the table's columns (all of them,
        /// not only the projection).
        filter: Option<Expr>,
        /// Enough rows: the scan may stop once this many have passed the filter.
        limit: Option<usize>,
    },
    /// Constant rows (`VALUES`, or one empty row for a SELECT without FROM).
    Values {
        /// Output columns.
        schema: PlanSchema,
        /// Rows of constant expressions.
        rows: Vec<Vec<Expr>>,
    },
    /// Rows for which the predicate is true.
    Filter {
        /// Input.
        input: Box<LogicalPlan>,
        /// A boolean expression over the input.
        predicate: Expr,
    },
    /// Computed columns.
    Project {
        /// Input.
        input: Box<LogicalPlan>,
        /// One expression per output column.
        exprs: Vec<Expr>,
        /// Output columns.
        schema: PlanSchema,
    },
    /// GROUP BY: output is the group columns followed by the aggregates.
    Aggregate {
        /// Input.
        input: Box<LogicalPlan>,
        /// Group keys (empty: one group over all rows).
        group: Vec<Expr>,
        /// Aggregate calls.
        aggregates: Vec<AggregateExpr>,
        /// Output columns.
        schema: PlanSchema,
    },
    /// ORDER BY, keeping at most `fetch` rows when set (top-N).
    Sort {
        /// Input.
        input: Box<LogicalPlan>,
        /// Keys, first is most significant.
        keys: Vec<SortKey>,
        /// Rows to keep.
        fetch: Option<usize>,
    },
    /// OFFSET/LIMIT.
    Limit {
        /// Input.
        input: Box<LogicalPlan>,
        /// Rows to skip.
        skip: usize,
        /// Rows to return after skipping.
        fetch: Option<usize>,
    },
    /// A join of two inputs; output is the left columns then the right.
    Join {
        /// Left input.
        left: Box<LogicalPlan>,
        /// Right input (the hash table side).
        right: Box<LogicalPlan>,
        /// Inner or left outer.
        kind: JoinKind,
        /// Equality keys (left expr over left input, right expr over right input).
        on: Vec<(Expr, Expr)>,
        /// Any other condition, over the joined columns.
        filter: Option<Expr>,
        /// Output columns.
        schema: PlanSchema,
    },
    /// `generate_series(start, stop [, step])` in FROM: integers or timestamps.
    GenerateSeries {
        /// First value.
        start: Expr,
        /// Last value (inclusive).
        stop: Expr,
        /// Increment (1, or an interval for timestamps).
        step: Option<Expr>,
        /// One column.
        schema: PlanSchema,
    },
    /// `unnest(array)` in FROM: one text row per element of an array in text form.
    Unnest {
        /// The array.
        array: Expr,
        /// One column.
        schema: PlanSchema,
    },
    /// Window functions: output is the input's columns followed by one column per
    /// window expression.
    Window {
        /// Input.
        input: Box<LogicalPlan>,
        /// The window expressions, over the input.
        windows: Vec<WindowExpr>,
        /// Output columns.
        schema: PlanSchema,
    },
    /// Set-returning functions in the SELECT list (`unnest(a)`,
    /// `generate_subscripts(a, 1)`, `generate_series(1, n)`): each input row
    /// becomes as many rows as its longest function result, the functions
    /// running side by side (a shorter one gives NULLs), as in PostgreSQL 10
    /// and later. Output is the input's columns, then one per function.
    ProjectSet {
        /// Input.
        input: Box<LogicalPlan>,
        /// The functions, over the input.
        functions: Vec<SetFunction>,
        /// Output columns.
        schema: PlanSchema,
    },
    /// UNION ALL of inputs with the same column count.
    Union {
        /// Inputs.
        inputs: Vec<LogicalPlan>,
        /// Output columns (types unified).
        schema: PlanSchema,
    },
}

/// A set-returning function of the SELECT list.
#[derive(Clone, Debug, PartialEq)]
pub enum SetFunction {
    /// `unnest(array)`: its elements, of type `element`.
    Unnest {
        /// The array (in text form).
        array: Expr,
        /// The elements' type (text unless the array's column says otherwise).
        element: DataType,
    },
    /// `generate_subscripts(array, dim)`: 1 to the array's length.
    Subscripts {
        /// The array (in text form).
        array: Expr,
    },
    /// `generate_series(start, stop [, step])` over integers.
    Series {
        /// First value.
        start: Expr,
        /// Last value (inclusive).
        stop: Expr,
        /// Increment (1 if absent).
        step: Option<Expr>,
    },
}

impl SetFunction {
    /// The function's arguments.
    pub fn args(&self) -> Vec<&Expr> {
        match self {
            SetFunction::Unnest { array, .. } | SetFunction::Subscripts { array } => vec![array],
            SetFunction::Series { start, stop, step } => {
                let mut v = vec![start, stop];
                v.extend(step.iter());
                v
            }
        }
    }

    /// The same function with `f` applied to its arguments.
    pub fn map(&self, f: &dyn Fn(&Expr) -> Expr) -> SetFunction {
        match self {
            SetFunction::Unnest { array, element } => SetFunction::Unnest {
                array: f(array),
                element: element.clone(),
            },
            SetFunction::Subscripts { array } => SetFunction::Subscripts { array: f(array) },
            SetFunction::Series { start, stop, step } => SetFunction::Series {
                start: f(start),
                stop: f(stop),
                step: step.as_ref().map(f),
            },
        }
    }

    /// The SQL name.
    pub fn name(&self) -> &'static str {
        match self {
            SetFunction::Unnest { .. } => "unnest",
            SetFunction::Subscripts { .. } => "generate_subscripts",
            SetFunction::Series { .. } => "generate_series",
        }
    }
}

impl LogicalPlan {
    /// Every row and column of `source`, under `schema` (one field per column).
    pub fn scan(source: TableSource, schema: PlanSchema) -> LogicalPlan {
        LogicalPlan::Scan {
            projection: (0..schema.fields.len()).collect(),
            source,
            schema,
            filter: None,
            limit: None,
        }
    }

    /// `input` filtered by `predicate`. A filter right on a filter (WHERE on
    /// a table's retention filter) becomes one filter of both, the first's
    /// conjuncts first, so the scan below sees one predicate to push down and
    /// prune with.
    pub fn filter(input: LogicalPlan, predicate: Expr) -> LogicalPlan {
        match input {
            LogicalPlan::Filter {
                input,
                predicate: first,
            } if !first.has_subquery() && !predicate.has_subquery() => LogicalPlan::Filter {
                input,
                predicate: Expr::Binary {
                    op: BinaryOp::And,
                    left: Box::new(first),
                    right: Box::new(predicate),
                },
            },
            input => LogicalPlan::Filter {
                input: Box::new(input),
                predicate,
            },
        }
    }

    /// The node's output columns.
    pub fn schema(&self) -> &PlanSchema {
        match self {
            LogicalPlan::Scan { schema, .. }
            | LogicalPlan::Values { schema, .. }
            | LogicalPlan::Project { schema, .. }
            | LogicalPlan::Aggregate { schema, .. }
            | LogicalPlan::Join { schema, .. }
            | LogicalPlan::GenerateSeries { schema, .. }
            | LogicalPlan::Unnest { schema, .. }
            | LogicalPlan::Window { schema, .. }
            | LogicalPlan::ProjectSet { schema, .. }
            | LogicalPlan::Union { schema, .. } => schema,
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Sort { input, .. }
            | LogicalPlan::Limit { input, .. } => input.schema(),
        }
    }

    /// The same plan with `f` applied to every expression in it (used to bind a
    /// correlated subquery to one row of the enclosing query).
    pub fn map_exprs(&self, f: &dyn Fn(&Expr) -> Expr) -> LogicalPlan {
        let m = |p: &LogicalPlan| Box::new(p.map_exprs(f));
        match self {
            LogicalPlan::Scan {
                source,
                schema,
                projection,
                filter,
                limit,
            } => LogicalPlan::Scan {
                source: source.clone(),
                schema: schema.clone(),
                projection: projection.clone(),
                filter: filter.as_ref().map(f),
                limit: *limit,
            },
            LogicalPlan::Values { schema, rows } => LogicalPlan::Values {
                schema: schema.clone(),
                rows: rows.iter().map(|r| r.iter().map(f).collect()).collect(),
            },
            LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
                input: m(input),
                predicate: f(predicate),
            },
            LogicalPlan::Project {
                input,
                exprs,
                schema,
            } => LogicalPlan::Project {
                input: m(input),
                exprs: exprs.iter().map(f).collect(),
                schema: schema.clone(),
            },
            LogicalPlan::Aggregate {
                input,
                group,
                aggregates,
                schema,
            } => LogicalPlan::Aggregate {
                input: m(input),
                group: group.iter().map(f).collect(),
                aggregates: aggregates
                    .iter()
                    .map(|a| AggregateExpr {
                        func: a.func,
                        arg: a.arg.as_ref().map(f),
                        distinct: a.distinct,
                        separator: a.separator.clone(),
                    })
                    .collect(),
                schema: schema.clone(),
            },
            LogicalPlan::Sort { input, keys, fetch } => LogicalPlan::Sort {
                input: m(input),
                keys: keys
                    .iter()
                    .map(|k| SortKey {
                        expr: f(&k.expr),
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    })
                    .collect(),
                fetch: *fetch,
            },
            LogicalPlan::Limit { input, skip, fetch } => LogicalPlan::Limit {
                input: m(input),
                skip: *skip,
                fetch: *fetch,
            },
            LogicalPlan::Join {
                left,
                right,
                kind,
                on,
                filter,
                schema,
            } => LogicalPlan::Join {
                left: m(left),
                right: m(right),
                kind: *kind,
                on: on.iter().map(|(l, r)| (f(l), f(r))).collect(),
                filter: filter.as_ref().map(f),
                schema: schema.clone(),
            },
            LogicalPlan::Union { inputs, schema } => LogicalPlan::Union {
                inputs: inputs.iter().map(|p| p.map_exprs(f)).collect(),
                schema: schema.clone(),
            },
            LogicalPlan::Unnest { array, schema } => LogicalPlan::Unnest {
                array: f(array),
                schema: schema.clone(),
            },
            LogicalPlan::Window {
                input,
                windows,
                schema,
            } => LogicalPlan::Window {
                input: m(input),
                windows: windows.iter().map(|w| w.map(&mut |e| f(e))).collect(),
                schema: schema.clone(),
            },
            LogicalPlan::GenerateSeries {
                start,
                stop,
                step,
                schema,
            } => LogicalPlan::GenerateSeries {
                start: f(start),
                stop: f(stop),
                step: step.as_ref().map(f),
                schema: schema.clone(),
            },
            LogicalPlan::ProjectSet {
                input,
                functions,
                schema,
            } => LogicalPlan::ProjectSet {
                input: m(input),
                functions: functions.iter().map(|s| s.map(f)).collect(),
                schema: schema.clone(),
            },
        }
    }

    /// The same node over inputs rewritten by `f` (leaves are returned as they are).
    pub fn map_inputs(self, f: &mut dyn FnMut(LogicalPlan) -> LogicalPlan) -> LogicalPlan {
        let mut g = |p: Box<LogicalPlan>| Box::new(f(*p));
        match self {
            LogicalPlan::Scan { .. }
            | LogicalPlan::Values { .. }
            | LogicalPlan::GenerateSeries { .. }
            | LogicalPlan::Unnest { .. } => self,
            LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
                input: g(input),
                predicate,
            },
            LogicalPlan::Project {
                input,
                exprs,
                schema,
            } => LogicalPlan::Project {
                input: g(input),
                exprs,
                schema,
            },
            LogicalPlan::Aggregate {
                input,
                group,
                aggregates,
                schema,
            } => LogicalPlan::Aggregate {
                input: g(input),
                group,
                aggregates,
                schema,
            },
            LogicalPlan::Sort { input, keys, fetch } => LogicalPlan::Sort {
                input: g(input),
                keys,
                fetch,
            },
            LogicalPlan::Limit { input, skip, fetch } => LogicalPlan::Limit {
                input: g(input),
                skip,
                fetch,
            },
            LogicalPlan::Join {
                left,
                right,
                kind,
                on,
                filter,
                schema,
            } => LogicalPlan::Join {
                left: g(left),
                right: g(right),
                kind,
                on,
                filter,
                schema,
            },
            LogicalPlan::Window {
                input,
                windows,
                schema,
            } => LogicalPlan::Window {
                input: g(input),
                windows,
                schema,
            },
            LogicalPlan::Union { inputs, schema } => LogicalPlan::Union {
                inputs: inputs.into_iter().map(&mut *f).collect(),
                schema,
            },
            LogicalPlan::ProjectSet {
                input,
                functions,
                schema,
            } => LogicalPlan::ProjectSet {
                input: g(input),
                functions,
                schema,
            },
        }
    }

    /// True if some expression in the plan reads the enclosing query's row.
    pub fn is_correlated(&self) -> bool {
        let found = std::cell::Cell::new(false);
        self.map_exprs(&|e| {
            e.walk(&mut |x| {
                if matches!(x, Expr::OuterColumn { .. }) {
                    found.set(true);
                }
            });
            e.clone()
        });
        found.get()
    }

    /// Renders the plan as indented text, one node per line (for EXPLAIN).
    pub fn display_indent(&self) -> String {
        self.display_indent_with(&|_| None)
    }

    /// [`LogicalPlan::display_indent`] with `note(node)` appended to each node's
    /// line where it has one (EXPLAIN ANALYZE's time and rows).
    pub fn display_indent_with(&self, note: &dyn Fn(&LogicalPlan) -> Option<String>) -> String {
        let mut out = String::new();
        self.fmt_indent(&mut out, 0, note);
        out
    }

    /// This node's identity while the plan is alive (its address), for keying
    /// per-operator statistics.
    pub fn node_id(&self) -> usize {
        self as *const LogicalPlan as usize
    }

    fn fmt_indent(
        &self,
        out: &mut String,
        depth: usize,
        note: &dyn Fn(&LogicalPlan) -> Option<String>,
    ) {
        let pad = "  ".repeat(depth);
        let cols = |s: &PlanSchema| {
            s.fields
                .iter()
                .map(|f| f.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let line = match self {
            LogicalPlan::Scan {
                source,
                schema,
                filter,
                limit,
                ..
            } => {
                let name = match source {
                    TableSource::Stored(t) => t.name().to_string(),
                    TableSource::Virtual { name, .. } => name.clone(),
                };
                let filter = filter.as_ref().map_or(String::new(), |f| {
                    format!(" filter={}", f.display(&source.full_schema()))
                });
                let limit = limit.map_or(String::new(), |l| format!(" limit={l}"));
                format!("Scan: {name} columns=[{}]{filter}{limit}", cols(schema))
            }
            LogicalPlan::Values { rows, .. } => format!("Values: rows={}", rows.len()),
            LogicalPlan::Filter { input, predicate } => {
                format!("Filter: {}", predicate.display(input.schema()))
            }
            LogicalPlan::Project {
                input,
                exprs,
                schema,
            } => format!(
                "Project: {}",
                exprs
                    .iter()
                    .zip(&schema.fields)
                    .map(|(e, f)| {
                        let text = e.display(input.schema());
                        if text == f.name {
                            text
                        } else {
                            format!("{text} AS {}", f.name)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LogicalPlan::Aggregate {
                input,
                group,
                aggregates,
                ..
            } => format!(
                "Aggregate: group=[{}] aggregates=[{}]",
                group
                    .iter()
                    .map(|g| g.display(input.schema()))
                    .collect::<Vec<_>>()
                    .join(", "),
                aggregates
                    .iter()
                    .map(|a| a.display(input.schema()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LogicalPlan::Sort { input, keys, fetch } => format!(
                "Sort: {}{}",
                keys.iter()
                    .map(|k| format!(
                        "{} {} NULLS {}",
                        k.expr.display(input.schema()),
                        if k.descending { "DESC" } else { "ASC" },
                        if k.nulls_first { "FIRST" } else { "LAST" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                fetch.map_or(String::new(), |f| format!(" (top {f})"))
            ),
            LogicalPlan::Limit { skip, fetch, .. } => format!(
                "Limit: offset={skip} limit={}",
                fetch.map_or("ALL".to_string(), |f| f.to_string())
            ),
            LogicalPlan::Join {
                kind,
                on,
                filter,
                left,
                right,
                schema,
            } => format!(
                "HashJoin: {kind:?} on=[{}]{}",
                on.iter()
                    .map(|(l, r)| format!(
                        "{} = {}",
                        l.display(left.schema()),
                        r.display(right.schema())
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                filter
                    .as_ref()
                    .map_or(String::new(), |f| format!(" filter={}", f.display(schema)))
            ),
            LogicalPlan::Union { inputs, .. } => format!("UnionAll: inputs={}", inputs.len()),
            LogicalPlan::ProjectSet {
                input, functions, ..
            } => format!(
                "ProjectSet: {}",
                functions
                    .iter()
                    .map(|s| format!(
                        "{}({})",
                        s.name(),
                        s.args()
                            .iter()
                            .map(|a| a.display(input.schema()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LogicalPlan::GenerateSeries { .. } => "GenerateSeries".to_string(),
            LogicalPlan::Unnest { .. } => "Unnest".to_string(),
            LogicalPlan::Window { input, windows, .. } => format!(
                "Window: {}",
                windows
                    .iter()
                    .map(|w| Expr::Window(Box::new(w.clone())).display(input.schema()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push_str(&pad);
        out.push_str(&line);
        if let Some(note) = note(self) {
            out.push_str("  ");
            out.push_str(&note);
        }
        out.push('\n');
        match self {
            LogicalPlan::Scan { .. }
            | LogicalPlan::Values { .. }
            | LogicalPlan::GenerateSeries { .. }
            | LogicalPlan::Unnest { .. } => {}
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Project { input, .. }
            | LogicalPlan::Aggregate { input, .. }
            | LogicalPlan::Sort { input, .. }
            | LogicalPlan::Limit { input, .. }
            | LogicalPlan::ProjectSet { input, .. }
            | LogicalPlan::Window { input, .. } => input.fmt_indent(out, depth + 1, note),
            LogicalPlan::Join { left, right, .. } => {
                left.fmt_indent(out, depth + 1, note);
                right.fmt_indent(out, depth + 1, note);
            }
            LogicalPlan::Union { inputs, .. } => inputs
                .iter()
                .for_each(|i| i.fmt_indent(out, depth + 1, note)),
        }
    }
}
