//! String functions, with PostgreSQL's semantics: lengths and positions count
//! characters, not bytes, and NULL in gives NULL out.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, StringArray};
use arrow::datatypes::Int64Type;
use md5::{Digest, Md5};

use super::{Builtin, Type};
use crate::context::QueryContext;
use crate::error::{Error, Result};

/// The text functions.
pub static FUNCTIONS: &[Builtin] = &[
    Builtin::new("lpad", &[Type::Text, Type::Int64], Type::Text, lpad),
    Builtin::new(
        "lpad",
        &[Type::Text, Type::Int64, Type::Text],
        Type::Text,
        lpad,
    ),
    Builtin::new("rpad", &[Type::Text, Type::Int64], Type::Text, rpad),
    Builtin::new(
        "rpad",
        &[Type::Text, Type::Int64, Type::Text],
        Type::Text,
        rpad,
    ),
    Builtin::new(
        "split_part",
        &[Type::Text, Type::Text, Type::Int64],
        Type::Text,
        split_part,
    ),
    Builtin::new("strpos", &[Type::Text, Type::Text], Type::Int32, strpos),
    Builtin::new("repeat", &[Type::Text, Type::Int64], Type::Text, repeat),
    Builtin::new("reverse", &[Type::Text], Type::Text, reverse),
    Builtin::new("initcap", &[Type::Text], Type::Text, initcap),
    Builtin::new("md5", &[Type::Text], Type::Text, md5),
    Builtin::new(
        "starts_with",
        &[Type::Text, Type::Text],
        Type::Boolean,
        starts_with,
    ),
    Builtin::new("ascii", &[Type::Text], Type::Int32, ascii),
    Builtin::new("chr", &[Type::Int64], Type::Text, chr),
    Builtin::new(
        "translate",
        &[Type::Text, Type::Text, Type::Text],
        Type::Text,
        translate,
    ),
    Builtin::new("concat_ws", &[Type::Text], Type::Text, concat_ws).variadic(Type::Text),
    Builtin::new(
        "regexp_replace",
        &[Type::Text, Type::Text, Type::Text],
        Type::Text,
        regexp_replace,
    ),
    Builtin::new(
        "regexp_replace",
        &[Type::Text, Type::Text, Type::Text, Type::Text],
        Type::Text,
        regexp_replace,
    ),
    Builtin::new(
        "regexp_match",
        &[Type::Text, Type::Text],
        Type::TextArray,
        regexp_match,
    ),
    Builtin::new(
        "regexp_match",
        &[Type::Text, Type::Text, Type::Text],
        Type::TextArray,
        regexp_match,
    ),
    Builtin::new("octet_length", &[Type::Text], Type::Int32, octet_length),
];

/// The longest string a function builds (PostgreSQL's limit is 1 GB).
const MAX_STRING_BYTES: usize = 1 << 30;

fn text(a: &ArrayRef) -> &StringArray {
    a.as_string::<i32>()
}

fn too_long() -> Error {
    Error::ResourcesExhausted("requested length too large".into())
}

/// A text result row by row, NULL where any argument is NULL.
fn text_rows(
    args: &[ArrayRef],
    rows: usize,
    mut f: impl FnMut(usize) -> Result<String>,
) -> Result<ArrayRef> {
    let out = (0..rows)
        .map(|r| {
            if args.iter().any(|a| a.is_null(r)) {
                Ok(None)
            } else {
                f(r).map(Some)
            }
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

fn int(a: &ArrayRef, r: usize) -> i64 {
    a.as_primitive::<Int64Type>().value(r)
}

fn pad(args: &[ArrayRef], rows: usize, left: bool) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        let s = text(&args[0]).value(r);
        let n = int(&args[1], r).max(0) as usize;
        let fill = args.get(2).map_or(" ", |f| text(f).value(r));
        let len = s.chars().count();
        if len >= n {
            return Ok(s.chars().take(n).collect());
        }
        if fill.is_empty() {
            return Ok(s.to_string());
        }
        if n.saturating_mul(4) > MAX_STRING_BYTES {
            return Err(too_long());
        }
        let padding: String = fill.chars().cycle().take(n - len).collect();
        Ok(if left {
            padding + s
        } else {
            s.to_string() + &padding
        })
    })
}

fn lpad(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    pad(args, rows, true)
}

fn rpad(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    pad(args, rows, false)
}

fn split_part(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        let (s, delim, n) = (
            text(&args[0]).value(r),
            text(&args[1]).value(r),
            int(&args[2], r),
        );
        if n == 0 {
            return Err(Error::InvalidParameter(
                "field position must not be zero".into(),
            ));
        }
        let parts: Vec<&str> = if delim.is_empty() {
            vec![s]
        } else {
            s.split(delim).collect()
        };
        let index = if n > 0 {
            (n - 1) as usize
        } else {
            match parts.len().checked_sub(n.unsigned_abs() as usize) {
                Some(i) => i,
                None => return Ok(String::new()),
            }
        };
        Ok(parts.get(index).map_or(String::new(), |p| p.to_string()))
    })
}

fn strpos(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out: Int32Array = (0..rows)
        .map(|r| {
            if args[0].is_null(r) || args[1].is_null(r) {
                return None;
            }
            let (s, sub) = (text(&args[0]).value(r), text(&args[1]).value(r));
            Some(
                s.find(sub)
                    .map_or(0, |byte| s[..byte].chars().count() as i32 + 1),
            )
        })
        .collect();
    Ok(Arc::new(out))
}

fn repeat(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        let s = text(&args[0]).value(r);
        let n = int(&args[1], r).max(0) as usize;
        if s.len().saturating_mul(n) > MAX_STRING_BYTES {
            return Err(too_long());
        }
        Ok(s.repeat(n))
    })
}

fn reverse(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        Ok(text(&args[0]).value(r).chars().rev().collect())
    })
}

/// Upper-cases the first letter of each word (a run of letters and digits)
/// and lower-cases the rest.
fn initcap(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        let mut out = String::new();
        let mut in_word = false;
        for c in text(&args[0]).value(r).chars() {
            if c.is_alphanumeric() {
                if in_word {
                    out.extend(c.to_lowercase());
                } else {
                    out.extend(c.to_uppercase());
                }
                in_word = true;
            } else {
                out.push(c);
                in_word = false;
            }
        }
        Ok(out)
    })
}

fn md5(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        let digest = Md5::digest(text(&args[0]).value(r).as_bytes());
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    })
}

fn starts_with(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out: BooleanArray = (0..rows)
        .map(|r| {
            (!args[0].is_null(r) && !args[1].is_null(r))
                .then(|| text(&args[0]).value(r).starts_with(text(&args[1]).value(r)))
        })
        .collect();
    Ok(Arc::new(out))
}

fn ascii(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out: Int32Array = (0..rows)
        .map(|r| {
            (!args[0].is_null(r)).then(|| {
                text(&args[0])
                    .value(r)
                    .chars()
                    .next()
                    .map_or(0, |c| c as i32)
            })
        })
        .collect();
    Ok(Arc::new(out))
}

fn chr(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        let code = int(&args[0], r);
        match u32::try_from(code).ok().and_then(char::from_u32) {
            Some(c) if code != 0 => Ok(c.to_string()),
            _ => Err(Error::InvalidParameter(format!(
                "requested character not valid for encoding: {code}"
            ))),
        }
    })
}

fn translate(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    text_rows(args, rows, |r| {
        let from: Vec<char> = text(&args[1]).value(r).chars().collect();
        let to: Vec<char> = text(&args[2]).value(r).chars().collect();
        Ok(text(&args[0])
            .value(r)
            .chars()
            .filter_map(|c| match from.iter().position(|f| *f == c) {
                Some(i) => to.get(i).copied(),
                None => Some(c),
            })
            .collect())
    })
}

/// concat_ws(sep, ...): the non-NULL arguments joined by `sep`; NULL only if
/// `sep` is.
fn concat_ws(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out: StringArray = (0..rows)
        .map(|r| {
            if args[0].is_null(r) {
                return None;
            }
            let parts: Vec<&str> = args[1..]
                .iter()
                .filter(|a| !a.is_null(r))
                .map(|a| text(a).value(r))
                .collect();
            Some(parts.join(text(&args[0]).value(r)))
        })
        .collect();
    Ok(Arc::new(out))
}

fn octet_length(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out: Int32Array = (0..rows)
        .map(|r| (!args[0].is_null(r)).then(|| text(&args[0]).value(r).len() as i32))
        .collect();
    Ok(Arc::new(out))
}

/// A compiled pattern with PostgreSQL's flags (`i` case-insensitive, `g`
/// every match), cached while a column repeats the same pattern.
struct Patterns {
    last: Option<(String, String, regex::Regex)>,
}

impl Patterns {
    fn get(&mut self, pattern: &str, flags: &str) -> Result<&regex::Regex> {
        let fresh = !matches!(&self.last, Some((p, f, _)) if p == pattern && f == flags);
        if fresh {
            if let Some(bad) = flags.chars().find(|c| !"gi".contains(*c)) {
                return Err(Error::InvalidParameter(format!(
                    "invalid regular expression option: \"{bad}\""
                )));
            }
            let re = regex::RegexBuilder::new(pattern)
                .case_insensitive(flags.contains('i'))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| Error::Data {
                    code: "2201B",
                    message: format!("invalid regular expression: {e}"),
                })?;
            self.last = Some((pattern.to_string(), flags.to_string(), re));
        }
        match &self.last {
            Some((_, _, re)) => Ok(re),
            None => Err(Error::Internal("pattern cache empty".into())),
        }
    }
}

/// PostgreSQL's replacement text (`\1`, `\&`) in the `regex` crate's syntax.
fn replacement(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(d @ '0'..='9') => out.push_str(&format!("${{{d}}}")),
                Some('&') => out.push_str("${0}"),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

fn regexp_replace(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let mut patterns = Patterns { last: None };
    text_rows(args, rows, |r| {
        let flags = args.get(3).map_or("", |f| text(f).value(r));
        let re = patterns.get(text(&args[1]).value(r), flags)?;
        let with = replacement(text(&args[2]).value(r));
        let s = text(&args[0]).value(r);
        Ok(if flags.contains('g') {
            re.replace_all(s, with.as_str()).into_owned()
        } else {
            re.replace(s, with.as_str()).into_owned()
        })
    })
}

/// regexp_match: the first match's capture groups (or the whole match when
/// the pattern has none) as a text[]; NULL without a match.
fn regexp_match(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let mut patterns = Patterns { last: None };
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        if args.iter().any(|a| a.is_null(r)) {
            out.push(None);
            continue;
        }
        let flags = args.get(2).map_or("", |f| text(f).value(r));
        if flags.contains('g') {
            return Err(Error::InvalidParameter(
                "regexp_match() does not support the \"global\" option".into(),
            ));
        }
        let re = patterns.get(text(&args[1]).value(r), flags)?;
        let Some(caps) = re.captures(text(&args[0]).value(r)) else {
            out.push(None);
            continue;
        };
        let items: Vec<Option<String>> = if caps.len() == 1 {
            vec![caps.get(0).map(|m| m.as_str().to_string())]
        } else {
            (1..caps.len())
                .map(|i| caps.get(i).map(|m| m.as_str().to_string()))
                .collect()
        };
        out.push(Some(items));
    }
    crate::array::from_texts(
        out,
        &arrow::datatypes::DataType::Utf8,
        sluice_storage::zone::Zone::UTC,
    )
}
