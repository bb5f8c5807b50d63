//! COPY's data formats, as PostgreSQL reads and writes them: `text` (tab
//! separated, `\N` for NULL, backslash escapes), `csv` (quoted fields, empty
//! for NULL, an optional header line) and `binary` (a signature, then each
//! row's fields length-prefixed in PostgreSQL's binary forms). Rows come in as one buffer at the
//! end of a `COPY ... FROM STDIN` (so a quoted field may span CopyData
//! messages, and the whole COPY is applied or none of it) and go out one line
//! per row. Hand-written: these are PostgreSQL's own rules (escapes, `\.`, the
//! NULL string, quoting only where needed), which a general CSV crate does not
//! follow.

use sluice_query::Error;
use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

/// A COPY data format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format.
    Text,
    /// Comma-separated values.
    Csv,
    /// PostgreSQL's binary COPY format.
    Binary,
}

/// How COPY reads or writes its data (the statement's options).
#[derive(Clone, Debug, PartialEq)]
pub struct CopyOptions {
    /// text or csv.
    pub format: CopyFormat,
    /// Between fields: tab (text) or comma (csv) unless given.
    pub delimiter: char,
    /// What a NULL is written as: `\N` (text) or the empty string (csv).
    pub null: String,
    /// A first line of column names (skipped when reading).
    pub header: bool,
    /// CSV's quote character.
    pub quote: char,
    /// CSV's escape character inside quotes (the quote itself by default).
    pub escape: char,
}

impl CopyOptions {
    /// The options of a COPY statement, in either syntax (`WITH (FORMAT csv,
    /// HEADER)` or psql's `CSV HEADER`).
    ///
    /// # Errors
    /// 0A000 for an option Sluice does not act on (binary, FORCE_QUOTE, an
    /// encoding other than UTF8), 22023 for a bad value.
    pub fn from_statement(
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<CopyOptions, Error> {
        let mut format = CopyFormat::Text;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) =
            (None, None, false, '"', None);
        let unsupported = |what: String| Err(Error::NotSupported(format!("COPY option {what}")));
        for o in options {
            match o {
                CopyOption::Format(f) => {
                    format = match f.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        "binary" => CopyFormat::Binary,
                        other => return unsupported(format!("FORMAT {other}")),
                    }
                }
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = *c,
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::Freeze(_) => {}
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return unsupported(other.to_string()),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Csv(csv) => {
                    format = CopyFormat::Csv;
                    for c in csv {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = *q,
                            CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                            other => return unsupported(other.to_string()),
                        }
                    }
                }
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Binary => format = CopyFormat::Binary,
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                other => return unsupported(other.to_string()),
            }
        }
        if format == CopyFormat::Binary && (header || delimiter.is_some() || null.is_some()) {
            return Err(Error::InvalidParameter(
                "COPY cannot specify HEADER, DELIMITER or NULL in BINARY mode".into(),
            ));
        }
        let csv = format == CopyFormat::Csv;
        let options = CopyOptions {
            format,
            delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        };
        let bad = |m: &str| Err(Error::InvalidParameter(format!("COPY {m}")));
        if options.delimiter == '\n' || options.delimiter == '\r' {
            return bad("delimiter cannot be newline or carriage return");
        }
        if csv && options.delimiter == options.quote {
            return bad("delimiter and quote must be different");
        }
        if !csv && options.delimiter == '\\' {
            return bad("delimiter cannot be backslash");
        }
        Ok(options)
    }
}

/// One row read from COPY input: its line number (1-based, as PostgreSQL's
/// `COPY t, line N` counts) and its fields, `None` for NULL.
pub type CopyRow = (usize, Vec<Option<String>>);

/// The rows of COPY input `data` in `options`' format, the header (if any)
/// skipped.
///
/// # Errors
/// 22P04 (bad_copy_file_format) naming the line: invalid UTF-8, an unterminated
/// quoted field, a bad escape.
pub fn parse(data: &[u8], options: &CopyOptions) -> Result<Vec<CopyRow>, Error> {
    let text = std::str::from_utf8(data).map_err(|e| {
        let line = data[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        bad_format(line, "invalid byte sequence for encoding \"UTF8\"")
    })?;
    let mut rows = match options.format {
        CopyFormat::Text => parse_text(text, options)?,
        CopyFormat::Csv => parse_csv(text, options)?,
        CopyFormat::Binary => {
            return Err(Error::Internal(
                "binary COPY data is read by parse_binary".into(),
            ))
        }
    };
    if options.header && !rows.is_empty() {
        rows.remove(0);
    }
    Ok(rows)
}

fn bad_format(line: usize, message: &str) -> Error {
    Error::InvalidText {
        message: format!("{message} (COPY, line {line})"),
        sqlstate: "22P04",
    }
}

fn parse_text(text: &str, options: &CopyOptions) -> Result<Vec<CopyRow>, Error> {
    let mut rows = Vec::new();
    if text.is_empty() {
        return Ok(rows);
    }
    // Every row ends with a newline; the last one may not.
    let body = text.strip_suffix('\n').unwrap_or(text);
    for (i, line) in body.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let number = i + 1;
        if line == "\\." {
            break; // the end-of-data marker
        }
        let fields = line
            .split(options.delimiter)
            .map(|raw| {
                if raw == options.null {
                    Ok(None)
                } else {
                    unescape(raw)
                        .map(Some)
                        .ok_or_else(|| bad_format(number, &format!("invalid escape in \"{raw}\"")))
                }
            })
            .collect::<Result<Vec<_>, Error>>()?;
        rows.push((number, fields));
    }
    Ok(rows)
}

/// A text-format field's value: `\t`, `\n`, `\\`, octal `\123`, hex `\x41`...
/// `None` for a backslash at the end.
fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('\\') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        match e {
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                    v = v * 16 + chars.next()?.to_digit(16)?;
                    n += 1;
                }
                if n == 0 {
                    out.push('x');
                } else {
                    out.push(char::from_u32(v)?);
                }
            }
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                let mut n = 1;
                while n < 3 && chars.peek().is_some_and(|d| ('0'..='7').contains(d)) {
                    v = v * 8 + chars.next()?.to_digit(8)?;
                    n += 1;
                }
                out.push(char::from_u32(v)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn parse_csv(text: &str, options: &CopyOptions) -> Result<Vec<CopyRow>, Error> {
    let (delimiter, quote, escape) = (options.delimiter, options.quote, options.escape);
    let mut rows = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    loop {
        let start_line = line;
        if chars.peek().is_none() {
            break;
        }
        let mut fields: Vec<Option<String>> = Vec::new();
        let mut field = String::new();
        let mut quoted = false; // the field had quotes: never NULL
        let mut at_line_start = true;
        loop {
            let Some(c) = chars.next() else {
                fields.push(csv_value(&field, quoted, options));
                break;
            };
            if c == quote {
                quoted = true;
                // Inside quotes until the closing one; escape+quote is a quote.
                loop {
                    let Some(q) = chars.next() else {
                        return Err(bad_format(start_line, "unterminated CSV quoted field"));
                    };
                    if q == escape && chars.peek() == Some(&quote) {
                        chars.next();
                        field.push(quote);
                    } else if q == quote {
                        break;
                    } else {
                        if q == '\n' {
                            line += 1;
                        }
                        field.push(q);
                    }
                }
            } else if c == delimiter {
                fields.push(csv_value(&field, quoted, options));
                field.clear();
                quoted = false;
            } else if c == '\n' || c == '\r' {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                line += 1;
                fields.push(csv_value(&field, quoted, options));
                break;
            } else if at_line_start && c == '\\' && chars.peek() == Some(&'.') {
                // `\.` alone on a line ends the data.
                chars.next();
                if matches!(chars.peek(), None | Some('\n') | Some('\r')) {
                    return Ok(rows);
                }
                field.push_str("\\.");
            } else {
                field.push(c);
            }
            at_line_start = false;
        }
        rows.push((start_line, fields));
    }
    Ok(rows)
}

/// A CSV field's value: an unquoted field equal to the NULL string is NULL.
fn csv_value(field: &str, quoted: bool, options: &CopyOptions) -> Option<String> {
    if !quoted && field == options.null {
        None
    } else {
        Some(field.to_string())
    }
}

/// One output row in `options`' format, newline included.
pub fn format_row(values: &[Option<String>], options: &CopyOptions) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(options.delimiter);
        }
        match (v, options.format) {
            (None, _) => out.push_str(&options.null),
            (Some(v), CopyFormat::Csv) => quote_csv(v, options, &mut out),
            (Some(v), _) => escape_text(v, options.delimiter, &mut out),
        }
    }
    out.push('\n');
    out
}

fn escape_text(v: &str, delimiter: char, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' if delimiter == '\t' => out.push_str("\\t"),
            c if c == delimiter => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// A CSV field, quoted where PostgreSQL quotes: when it holds the delimiter,
/// the quote, a newline, or reads as the NULL string (the empty string, by
/// default, is written `""`).
fn quote_csv(v: &str, options: &CopyOptions, out: &mut String) {
    let needs = v == options.null
        || v.contains([options.delimiter, options.quote, '\n', '\r'])
        || v.starts_with("\\.");
    if !needs {
        out.push_str(v);
        return;
    }
    out.push(options.quote);
    for c in v.chars() {
        if c == options.quote || c == options.escape {
            out.push(options.escape);
        }
        out.push(c);
    }
    out.push(options.quote);
}

/// The signature and header that open binary COPY data.
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One row of binary COPY data: its number (1-based, for error messages) and
/// each field's bytes (`None` for NULL).
pub type BinaryRow = (usize, Vec<Option<Vec<u8>>>);

/// The rows of binary COPY data.
///
/// # Errors
/// 22P04 for a bad signature, a truncated row or a trailer missing.
pub fn parse_binary(data: &[u8]) -> Result<Vec<BinaryRow>, Error> {
    let bad = |row: usize, what: &str| Error::InvalidText {
        message: format!("{what} (binary COPY, row {row})"),
        sqlstate: "22P04",
    };
    let signature = &BINARY_HEADER[..11];
    if data.len() < 19 || &data[..11] != signature {
        return Err(bad(0, "COPY file signature not recognized"));
    }
    let int = |at: usize, n: usize| -> Option<i64> {
        let b = data.get(at..at + n)?;
        Some(match n {
            2 => i64::from(i16::from_be_bytes([b[0], b[1]])),
            _ => i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        })
    };
    let extension = int(15, 4).ok_or_else(|| bad(0, "truncated header"))?;
    let mut at = 19 + usize::try_from(extension).map_err(|_| bad(0, "bad header"))?;
    let mut rows = Vec::new();
    loop {
        let row = rows.len() + 1;
        let count = int(at, 2).ok_or_else(|| bad(row, "missing trailer"))?;
        at += 2;
        if count == -1 {
            return Ok(rows);
        }
        let mut fields = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count {
            let len = int(at, 4).ok_or_else(|| bad(row, "truncated row"))?;
            at += 4;
            if len < 0 {
                fields.push(None);
                continue;
            }
            let end = at + len as usize;
            let bytes = data
                .get(at..end)
                .ok_or_else(|| bad(row, "truncated field"))?;
            fields.push(Some(bytes.to_vec()));
            at = end;
        }
        rows.push((row, fields));
    }
}

/// The header line of `columns` in `options`' format.
pub fn header(columns: &[String], options: &CopyOptions) -> String {
    let values: Vec<Option<String>> = columns.iter().map(|c| Some(c.clone())).collect();
    format_row(&values, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(format: CopyFormat) -> CopyOptions {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            delimiter: if csv { ',' } else { '\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: '"',
            escape: '"',
        }
    }

    #[test]
    fn text_format_reads_escapes_nulls_and_the_end_marker() {
        let o = opts(CopyFormat::Text);
        let rows = parse(b"1\ta\\tb\t\\N\n2\t\\\\x\\101\\x41\t\n\\.\nignored\n", &o).unwrap();
        assert_eq!(
            rows,
            vec![
                (1, vec![Some("1".into()), Some("a\tb".into()), None]),
                (
                    2,
                    vec![Some("2".into()), Some("\\xAA".into()), Some(String::new())]
                ),
            ]
        );
        assert_eq!(parse(b"1\n2\n", &o).unwrap().len(), 2);
        assert!(parse(b"1\tbad\\\n", &o).is_err());
    }

    #[test]
    fn csv_reads_quotes_embedded_newlines_and_empty_versus_null() {
        let mut o = opts(CopyFormat::Csv);
        o.header = true;
        let rows = parse(
            b"id,name,note\n1,\"a, b\",\"say \"\"hi\"\"\"\n2,,\"\"\n3,\"two\nlines\",x\r\n",
            &o,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (
                    2,
                    vec![
                        Some("1".into()),
                        Some("a, b".into()),
                        Some("say \"hi\"".into())
                    ]
                ),
                (3, vec![Some("2".into()), None, Some(String::new())]),
                (
                    4,
                    vec![
                        Some("3".into()),
                        Some("two\nlines".into()),
                        Some("x".into())
                    ]
                ),
            ]
        );
        let err = parse(b"a\n\"open\n", &opts(CopyFormat::Csv)).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn rows_are_written_as_postgresql_writes_them() {
        let t = opts(CopyFormat::Text);
        let row = [Some("a\tb\\c".to_string()), None, Some("x\ny".into())];
        assert_eq!(format_row(&row, &t), "a\\tb\\\\c\t\\N\tx\\ny\n");
        let c = opts(CopyFormat::Csv);
        let row = [
            Some("a,b".to_string()),
            None,
            Some(String::new()),
            Some("q\"".into()),
        ];
        assert_eq!(format_row(&row, &c), "\"a,b\",,\"\",\"q\"\"\"\n");
        // What is written reads back the same.
        for o in [t, c] {
            let row = vec![
                Some("x,\t\"y\"\n\\z".to_string()),
                None,
                Some(String::new()),
            ];
            let line = format_row(&row, &o);
            let back = parse(line.as_bytes(), &o).unwrap();
            assert_eq!(back, vec![(1, row.clone())], "{:?}", o.format);
        }
    }
}
