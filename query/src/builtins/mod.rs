//! Scalar functions defined by a table entry each: a name, the argument types
//! it takes, its result type and its kernel over Arrow arrays. The binder
//! picks the first entry of a name whose arguments the call's arguments
//! coerce to implicitly (PostgreSQL's overload resolution, simplified:
//! entries are listed most specific first), coerces them, and the executor
//! calls the kernel with arrays of exactly those types.
//!
//! A function that needs more than this (a constant field name decided at
//! bind time, the catalog, lazy arguments) stays a variant of
//! [`crate::logical::ScalarFunction`] of its own.

mod datetime;
mod format;
mod math;
mod text;

use std::fmt;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, IntervalUnit, TimeUnit};

use crate::context::QueryContext;
use crate::error::Result;

/// An argument or result type of a built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// text
    Text,
    /// integer
    Int32,
    /// bigint
    Int64,
    /// double precision
    Float64,
    /// boolean
    Boolean,
    /// timestamp without time zone
    Timestamp,
    /// timestamp with time zone
    TimestampTz,
    /// date
    Date,
    /// interval
    Interval,
    /// numeric, computed in double precision by the overload's kernel and
    /// returned at the division scale (the numeric overloads PostgreSQL picks
    /// for numeric arguments: `sqrt(2.0)`, `log(2, 8)`)
    Numeric,
    /// text[]: a list of text (only as a result: `regexp_match`)
    TextArray,
}

impl Type {
    /// The Arrow type of this SQL type in Sluice.
    pub fn data_type(self) -> DataType {
        match self {
            Type::Text => DataType::Utf8,
            Type::Int32 => DataType::Int32,
            Type::Int64 => DataType::Int64,
            Type::Float64 => DataType::Float64,
            Type::Boolean => DataType::Boolean,
            Type::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Type::TimestampTz => DataType::Timestamp(
                TimeUnit::Microsecond,
                Some(Arc::from(sluice_storage::types::UTC)),
            ),
            Type::Date => DataType::Date32,
            Type::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Type::Numeric => crate::numeric::numeric(crate::numeric::DIVISION_SCALE),
            Type::TextArray => crate::array::list_type(&DataType::Utf8),
        }
    }
}

/// A kernel: the arguments as arrays of `rows` rows each (a constant
/// argument is repeated), coerced to the entry's argument types.
pub type Kernel = fn(&[ArrayRef], usize, &QueryContext) -> Result<ArrayRef>;

/// One overload of a built-in scalar function.
pub struct Builtin {
    /// The SQL name.
    pub name: &'static str,
    /// Argument types, in order.
    pub args: &'static [Type],
    /// If set, any number of further arguments of this type.
    pub variadic: Option<Type>,
    /// Result type.
    pub returns: Type,
    /// The computation.
    pub kernel: Kernel,
}

impl Builtin {
    /// An overload taking exactly `args`.
    pub const fn new(
        name: &'static str,
        args: &'static [Type],
        returns: Type,
        kernel: Kernel,
    ) -> Self {
        Builtin {
            name,
            args,
            variadic: None,
            returns,
            kernel,
        }
    }

    /// The same overload taking any number of further arguments of `t`.
    pub const fn variadic(mut self, t: Type) -> Self {
        self.variadic = Some(t);
        self
    }

    /// True if a call with `n` arguments fits this overload's arity.
    pub fn takes(&self, n: usize) -> bool {
        n == self.args.len() || (self.variadic.is_some() && n > self.args.len())
    }

    /// The type argument `i` is coerced to.
    pub fn arg_type(&self, i: usize) -> Type {
        self.args
            .get(i)
            .copied()
            .or(self.variadic)
            .unwrap_or(Type::Text)
    }
}

impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.name, self.args)
    }
}

impl PartialEq for Builtin {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Builtin {}

/// The overloads of `name`, most specific first.
pub fn overloads(name: &str) -> impl Iterator<Item = &'static Builtin> + '_ {
    [text::FUNCTIONS, math::FUNCTIONS, datetime::FUNCTIONS]
        .into_iter()
        .flatten()
        .filter(move |b| b.name == name)
}

/// Every built-in function's name (for `pg_proc`-style listings and tests).
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = [text::FUNCTIONS, math::FUNCTIONS, datetime::FUNCTIONS]
        .into_iter()
        .flatten()
        .map(|b| b.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
