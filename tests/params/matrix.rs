//! The parameter matrix (`tests/params/matrix.json`) through tokio-postgres, which
//! sends every value in binary in the type the server describes. Each case runs
//! against Sluice and against PostgreSQL 15 (`SLUICE_PG_URL`) twice: prepared with
//! no declared types (each server's ParameterDescription must agree, and values are
//! sent in the types it reports), and prepared with the case's types declared.

use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postgres_types::{FromSql, IsNull, ToSql, Type};
use serde_json::Value as Json;
use tokio_postgres::{Client, Row};

type BoxError = Box<dyn StdError + Sync + Send>;

/// One matrix value, sent as whatever type the statement asks for.
#[derive(Debug)]
struct Arg<'a>(&'a Json);

impl Arg<'_> {
    fn text(&self) -> String {
        match self.0 {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let text = self.text();
        match *ty {
            Type::BOOL => text.parse::<bool>()?.to_sql(ty, out),
            Type::INT2 => text.parse::<i16>()?.to_sql(ty, out),
            Type::INT4 => text.parse::<i32>()?.to_sql(ty, out),
            Type::INT8 => text.parse::<i64>()?.to_sql(ty, out),
            Type::FLOAT4 => text.parse::<f32>()?.to_sql(ty, out),
            Type::FLOAT8 => text.parse::<f64>()?.to_sql(ty, out),
            Type::NUMERIC => {
                numeric_to_sql(&text, out)?;
                Ok(IsNull::No)
            }
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                text.to_sql(&Type::TEXT, out)
            }
            Type::DATE => NaiveDate::parse_from_str(&text, "%Y-%m-%d")?.to_sql(ty, out),
            Type::TIMESTAMP => timestamp(&text)?.to_sql(ty, out),
            Type::TIMESTAMPTZ => {
                let t = DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%#z")
                    .map(|t| t.with_timezone(&Utc))
                    .or_else(|_| timestamp(&text).map(|t| t.and_utc()))?;
                t.to_sql(ty, out)
            }
            Type::INTERVAL => {
                let mut parts = text.split(':').map(str::parse::<f64>);
                let (h, m, s) = match (parts.next(), parts.next(), parts.next()) {
                    (Some(h), Some(m), Some(s)) => (h?, m?, s?),
                    _ => return Err(format!("not an interval: {text}").into()),
                };
                out.put_i64(((h * 3600.0 + m * 60.0 + s) * 1e6).round() as i64);
                out.put_i32(0);
                out.put_i32(0);
                Ok(IsNull::No)
            }
            Type::INT4_ARRAY | Type::INT8_ARRAY | Type::TEXT_ARRAY => {
                let items = self.0.as_array().ok_or("not an array")?;
                let items: Vec<Arg<'_>> = items.iter().map(Arg).collect();
                items.to_sql(ty, out)
            }
            _ => Err(format!("no {ty} form for {text}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

fn timestamp(text: &str) -> Result<NaiveDateTime, BoxError> {
    Ok(
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| d.and_time(Default::default()))
        })?,
    )
}

/// A decimal string in NUMERIC's binary form: base-10000 digits around the point.
fn numeric_to_sql(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let pad_int = (4 - int.len() % 4) % 4;
    let int = format!("{}{int}", "0".repeat(pad_int));
    let pad_frac = (4 - frac.len() % 4) % 4;
    let frac_padded = format!("{frac}{}", "0".repeat(pad_frac));
    let mut digits: Vec<u16> = Vec::new();
    for chunk in int
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
    {
        digits.push(std::str::from_utf8(chunk)?.parse()?);
    }
    let weight = (int.len() / 4) as i16 - 1;
    out.put_u16(digits.len() as u16);
    out.put_i16(weight);
    out.put_u16(if negative { 0x4000 } else { 0 });
    out.put_u16(frac.len() as u16);
    for d in digits {
        out.put_u16(d);
    }
    Ok(())
}

/// A NUMERIC result as the double nearest its decimal value.
struct Numeric(f64);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let word = |k: usize| u16::from_be_bytes([raw[2 * k], raw[2 * k + 1]]);
        let (n, weight, sign) = (word(0) as usize, word(1) as i16 as i32, word(2));
        let (mut int, mut frac) = (String::new(), String::new());
        for k in 0..n {
            let position = weight - k as i32;
            let digits = format!("{:04}", word(4 + k));
            if position >= 0 {
                int.push_str(&digits);
            } else {
                if frac.is_empty() {
                    frac.push_str(&"0000".repeat((-position - 1) as usize));
                }
                frac.push_str(&digits);
            }
        }
        for _ in 0..(weight + 1 - n as i32).max(0) {
            int.push_str("0000");
        }
        let sign = if sign == 0x4000 { "-" } else { "" };
        let text = format!("{sign}0{int}.{frac}0");
        Ok(Numeric(text.parse()?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// An INTERVAL result as its three fields.
struct Interval(i64, i32, i32);

impl<'a> FromSql<'a> for Interval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(Interval(micros, days, months))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// One spelling per value: numbers by value (Sluice computes NUMERIC as double
/// precision), everything else by type and value.
fn canon(row: &Row, i: usize) -> String {
    fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Option<T> {
        row.try_get::<_, Option<T>>(i)
            .unwrap_or_else(|e| panic!("column {i}: {e}"))
    }
    let num = |v: Option<f64>| v.map_or("NULL".into(), |v| format!("num:{v:?}"));
    match *row.columns()[i].type_() {
        Type::BOOL => get::<bool>(row, i).map_or("NULL".into(), |b| format!("bool:{b}")),
        Type::INT2 => num(get::<i16>(row, i).map(f64::from)),
        Type::INT4 => num(get::<i32>(row, i).map(f64::from)),
        Type::INT8 => num(get::<i64>(row, i).map(|v| v as f64)),
        Type::FLOAT4 => num(get::<f32>(row, i).map(f64::from)),
        Type::FLOAT8 => num(get::<f64>(row, i)),
        Type::NUMERIC => num(get::<Numeric>(row, i).map(|n| n.0)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            get::<String>(row, i).map_or("NULL".into(), |s| format!("str:{s}"))
        }
        Type::DATE => get::<NaiveDate>(row, i).map_or("NULL".into(), |d| format!("date:{d}")),
        Type::TIMESTAMP => {
            get::<NaiveDateTime>(row, i).map_or("NULL".into(), |t| format!("ts:{t}"))
        }
        Type::TIMESTAMPTZ => {
            get::<DateTime<Utc>>(row, i).map_or("NULL".into(), |t| format!("tstz:{t}"))
        }
        Type::INTERVAL => get::<Interval>(row, i).map_or("NULL".into(), |v| {
            format!("interval:{}us {}d {}m", v.0, v.1, v.2)
        }),
        ref other => panic!("no canonical form for result type {other}"),
    }
}

/// A case's answer: rows, a command's row count, or an error's SQLSTATE (a value
/// the client could not send in the described type is the client's error).
async fn answer(client: &Client, sql: &str, declared: Option<&[Type]>, args: &[Json]) -> String {
    let stmt = match declared {
        Some(types) => client.prepare_typed(sql, types).await,
        None => client.prepare(sql).await,
    };
    let stmt = match stmt {
        Ok(s) => s,
        Err(e) => return format!("error {:?}", e.code().map(|c| c.code().to_string())),
    };
    let args: Vec<Arg<'_>> = args.iter().map(Arg).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    if stmt.columns().is_empty() {
        return match client.execute(&stmt, &refs).await {
            Ok(n) => format!("ok {n}"),
            Err(e) => format!("error {:?}", e.code().map(|c| c.code().to_string())),
        };
    }
    match client.query(&stmt, &refs).await {
        Ok(rows) => rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| canon(r, i))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error {:?}", e.code().map(|c| c.code().to_string())),
    }
}

/// The parameter types a server reports for `sql` prepared with none declared,
/// NUMERIC read as double precision (Sluice computes it so), or the SQLSTATE.
async fn described(client: &Client, sql: &str) -> String {
    match client.prepare(sql).await {
        Ok(s) => s
            .params()
            .iter()
            .map(|t| {
                if *t == Type::NUMERIC {
                    Type::FLOAT8
                } else {
                    t.clone()
                }
            })
            .map(|t| t.name().to_string())
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => format!("error {:?}", e.code().map(|c| c.code().to_string())),
    }
}

fn wire_type(label: &str) -> Type {
    match label {
        "int2" => Type::INT2,
        "int4" => Type::INT4,
        "int8" => Type::INT8,
        "float8" => Type::FLOAT8,
        "numeric" => Type::NUMERIC,
        "text" => Type::TEXT,
        "bool" => Type::BOOL,
        "date" => Type::DATE,
        "timestamp" => Type::TIMESTAMP,
        "timestamptz" => Type::TIMESTAMPTZ,
        "interval" => Type::INTERVAL,
        "int8[]" => Type::INT8_ARRAY,
        "int4[]" => Type::INT4_ARRAY,
        "text[]" => Type::TEXT_ARRAY,
        other => panic!("matrix type {other} has no wire type"),
    }
}

async fn setup(client: &Client, matrix: &Json, create: &str) {
    let sql = format!(
        "{};{};{}",
        matrix["drop"].as_str().unwrap(),
        matrix[create].as_str().unwrap(),
        matrix["rows"].as_str().unwrap()
    );
    for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
        client.batch_execute(statement).await.unwrap();
    }
}

/// Runs the matrix on `sluice` and `postgres`; returns the cells compared and the
/// differences found.
pub async fn run(sluice: &Client, postgres: &Client) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/params/matrix.json"
    ))
    .unwrap();
    let matrix: Json = serde_json::from_str(&text).unwrap();
    postgres
        .batch_execute(
            "SET TimeZone = 'UTC'; DROP SCHEMA IF EXISTS param_matrix_rust CASCADE; \
             CREATE SCHEMA param_matrix_rust; SET search_path = param_matrix_rust",
        )
        .await
        .unwrap();
    setup(postgres, &matrix, "create_postgres").await;
    setup(sluice, &matrix, "create_sluice").await;
    let mut differences = Vec::new();
    let mut cells = 0;
    for case in matrix["cases"].as_array().unwrap() {
        let sql = case["sql"].as_str().unwrap();
        let params = case["params"].as_array().unwrap();
        let types: Vec<Type> = params
            .iter()
            .map(|p| wire_type(p[0].as_str().unwrap()))
            .collect();
        let values: Vec<Json> = params.iter().map(|p| p[1].clone()).collect();
        let (want, got) = (described(postgres, sql).await, described(sluice, sql).await);
        if want != got {
            differences.push(format!(
                "{sql}: parameter types\n  postgres: {want}\n  sluice:   {got}"
            ));
        }
        for declared in [None, Some(types.as_slice())] {
            cells += 1;
            let mut want = answer(postgres, sql, declared, &values).await;
            let mut got = answer(sluice, sql, declared, &values).await;
            if let (true, Some(check)) = (want == got, case["check"].as_str()) {
                want = answer(postgres, check, None, &[]).await;
                got = answer(sluice, check, None, &[]).await;
            }
            if want != got {
                differences.push(format!(
                    "{sql} {params:?} declared={}\n  postgres: {want}\n  sluice:   {got}",
                    declared.is_some()
                ));
            }
        }
    }
    postgres
        .batch_execute("DROP SCHEMA param_matrix_rust CASCADE")
        .await
        .unwrap();
    (cells, differences)
}
