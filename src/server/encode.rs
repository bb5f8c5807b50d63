//! Arrow values to PostgreSQL wire values: the type of each column, its text form
//! (PostgreSQL's, shared with CAST and the CLI) and its binary form.

use sluice_storage::zone::Zone;
use std::error::Error as StdError;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, IntervalMonthDayNanoType,
    TimestampMicrosecondType, UInt32Type,
};
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};
use sluice_query::format::{format_value, to_interval};
use sluice_storage::types::format_interval;

/// The PostgreSQL type Sluice reports for an Arrow type.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int32 => Type::INT4,
        DataType::Int64 => Type::INT8,
        DataType::UInt32 => Type::OID,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(..) => Type::NUMERIC,
        DataType::Utf8 => Type::TEXT,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Date32 => Type::DATE,
        DataType::Interval(_) => Type::INTERVAL,
        DataType::Binary => Type::BYTEA,
        DataType::List(f) => match pg_type(f.data_type()) {
            Type::BOOL => Type::BOOL_ARRAY,
            Type::INT4 => Type::INT4_ARRAY,
            Type::INT8 => Type::INT8_ARRAY,
            Type::OID => Type::OID_ARRAY,
            Type::FLOAT8 => Type::FLOAT8_ARRAY,
            Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
            Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
            Type::DATE => Type::DATE_ARRAY,
            Type::INTERVAL => Type::INTERVAL_ARRAY,
            Type::NUMERIC => Type::NUMERIC_ARRAY,
            Type::BYTEA => Type::BYTEA_ARRAY,
            _ => Type::TEXT_ARRAY,
        },
        _ => Type::TEXT,
    }
}

/// Field descriptions for a result schema, each column in its requested format.
pub fn fields(
    schema: &arrow::datatypes::Schema,
    format: impl Fn(usize) -> FieldFormat,
) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format(i),
            )
        })
        .collect()
}

/// An interval in PostgreSQL's binary layout (microseconds, days, months) and text.
#[derive(Debug)]
struct PgInterval(sluice_storage::Interval);

impl ToSql for PgInterval {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgInterval {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_slice(format_interval(&self.0).as_bytes());
        Ok(IsNull::No)
    }
}

/// A numeric in PostgreSQL's binary form: base-10000 digits with a weight, a
/// sign and the display scale.
#[derive(Debug)]
struct PgNumeric {
    value: i128,
    scale: i8,
}

impl PgNumeric {
    fn bytes(&self) -> Vec<u8> {
        let scale = self.scale.max(0) as usize;
        let digits = self.value.unsigned_abs().to_string();
        let digits = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = digits.split_at(digits.len() - scale);
        // Integer part padded left, fraction padded right, to groups of 4.
        let int = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
        let frac = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
        let group = |s: &str| -> Vec<i16> {
            s.as_bytes()
                .chunks(4)
                .map(|c| {
                    std::str::from_utf8(c)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0)
                })
                .collect()
        };
        let mut groups = group(&int);
        let mut weight = groups.len() as i16 - 1;
        groups.extend(group(&frac));
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let mut out = Vec::with_capacity(8 + groups.len() * 2);
        out.extend((groups.len() as i16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend((if self.value < 0 { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend((scale as u16).to_be_bytes());
        for g in groups {
            out.extend(g.to_be_bytes());
        }
        out
    }
}

impl ToSql for PgNumeric {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_slice(&self.bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgNumeric {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_slice(sluice_query::numeric::format(self.value, self.scale).as_bytes());
        Ok(IsNull::No)
    }
}

fn internal(e: impl std::fmt::Display) -> PgWireError {
    PgWireError::ApiError(e.to_string().into())
}

/// Encodes every row of `batches` as DataRow messages described by `fields`.
/// `zone` is the session time zone for TIMESTAMPTZ text.
pub fn encode_rows(
    batches: &[RecordBatch],
    fields: &Arc<Vec<FieldInfo>>,
    zone: Zone,
) -> PgWireResult<Vec<PgWireResult<DataRow>>> {
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    for batch in batches {
        for row in 0..batch.num_rows() {
            for (column, field) in batch.columns().iter().zip(fields.iter()) {
                encode_value(&mut encoder, column.as_ref(), row, field, zone)?;
            }
            out.push(Ok(encoder.take_row()));
        }
    }
    Ok(out)
}

fn encode_value(
    enc: &mut DataRowEncoder,
    array: &dyn Array,
    row: usize,
    field: &FieldInfo,
    zone: Zone,
) -> PgWireResult<()> {
    if field.format() == FieldFormat::Text {
        let text = format_value(array, row, zone).map_err(internal)?;
        if matches!(array.data_type(), DataType::List(_)) {
            // pgwire quotes a string sent as an array type: send the array's
            // text form as it is.
            return enc.encode_field(&text.map(RawText));
        }
        return enc.encode_field(&text.as_deref());
    }
    if array.is_null(row) {
        return enc.encode_field(&None::<&str>);
    }
    match array.data_type() {
        DataType::Boolean => enc.encode_field(&array.as_boolean().value(row)),
        DataType::Int32 => enc.encode_field(&array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => enc.encode_field(&array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => enc.encode_field(&array.as_primitive::<UInt32Type>().value(row)),
        DataType::Float64 => enc.encode_field(&array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => enc.encode_field(&PgNumeric {
            value: array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(row),
            scale: *scale,
        }),
        DataType::Utf8 => enc.encode_field(&array.as_string::<i32>().value(row)),
        DataType::Timestamp(_, tz) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            let dt = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| internal(format!("timestamp {micros} out of range")))?;
            if tz.is_some() {
                enc.encode_field(&dt)
            } else {
                let naive: NaiveDateTime = dt.naive_utc();
                enc.encode_field(&naive)
            }
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date = NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                .ok_or_else(|| internal(format!("date {days} out of range")))?;
            enc.encode_field(&date)
        }
        DataType::Interval(_) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            enc.encode_field(&PgInterval(to_interval(v)))
        }
        DataType::Binary => enc.encode_field(&array.as_binary::<i32>().value(row)),
        DataType::List(element) => enc.encode_field(&PgArray {
            elements: array.as_list::<i32>().value(row),
            element_type: pg_type(element.data_type()),
        }),
        other => Err(internal(format!("no binary output for type {other}"))),
    }
}

/// A one-dimensional array in PostgreSQL's binary layout: dimensions, a NULL
/// flag, the element type, then each element's length and binary form.
#[derive(Debug)]
struct PgArray {
    elements: arrow::array::ArrayRef,
    element_type: Type,
}

impl ToSql for PgArray {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let n = self.elements.len();
        out.put_i32(if n == 0 { 0 } else { 1 });
        out.put_i32(i32::from(self.elements.null_count() > 0));
        out.put_u32(self.element_type.oid());
        if n > 0 {
            out.put_i32(i32::try_from(n)?);
            out.put_i32(1);
        }
        for k in 0..n {
            if self.elements.is_null(k) {
                out.put_i32(-1);
                continue;
            }
            let mut item = BytesMut::new();
            element_binary(self.elements.as_ref(), k, &self.element_type, &mut item)?;
            out.put_i32(i32::try_from(item.len())?);
            out.put_slice(&item);
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgArray {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let list = arrow::array::ListArray::new(
            Arc::new(arrow::datatypes::Field::new(
                "item",
                self.elements.data_type().clone(),
                true,
            )),
            arrow::buffer::OffsetBuffer::from_lengths([self.elements.len()]),
            Arc::clone(&self.elements),
            None,
        );
        let text = format_value(&list, 0, Zone::UTC)?.unwrap_or_default();
        out.put_slice(text.as_bytes());
        Ok(IsNull::No)
    }
}

/// A value's text form, sent as it is whatever the column's type.
#[derive(Debug)]
struct RawText(String);

impl ToSql for RawText {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for RawText {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// One array element's binary form.
pub(crate) fn element_binary(
    array: &dyn Array,
    row: usize,
    ty: &Type,
    out: &mut BytesMut,
) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
    match array.data_type() {
        DataType::Boolean => array.as_boolean().value(row).to_sql(ty, out),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_sql(ty, out),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_sql(ty, out),
        DataType::UInt32 => array
            .as_primitive::<UInt32Type>()
            .value(row)
            .to_sql(ty, out),
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .value(row)
            .to_sql(ty, out),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_sql(ty, out),
        DataType::Decimal128(_, scale) => PgNumeric {
            value: array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(row),
            scale: *scale,
        }
        .to_sql(ty, out),
        DataType::Timestamp(_, tz) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            let dt = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| format!("timestamp {micros} out of range"))?;
            if tz.is_some() {
                dt.to_sql(ty, out)
            } else {
                dt.naive_utc().to_sql(ty, out)
            }
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                .ok_or_else(|| format!("date {days} out of range"))?
                .to_sql(ty, out)
        }
        DataType::Interval(_) => PgInterval(to_interval(
            array.as_primitive::<IntervalMonthDayNanoType>().value(row),
        ))
        .to_sql(ty, out),
        other => Err(format!("no binary output for arrays of {other}").into()),
    }
}
