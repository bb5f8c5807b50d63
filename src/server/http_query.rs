//! `POST /query`: one read-only statement with `$n` parameters, answered as
//! JSON, for dashboard pages and scripts that would rather not speak the
//! PostgreSQL protocol. It authenticates as the PostgreSQL side does (the
//! same users, by HTTP Basic; trust only where PostgreSQL trusts) and runs
//! as a reader, whatever the user's role.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use serde_json::{json, Value};
use sluice_query::session::Role;
use sluice_query::{Param, StatementResult};
use sqlparser::ast::Statement;

use super::auth::Credentials;
use crate::Database;

/// Largest request body `/query` reads: a statement and its parameters.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The answer to one request: HTTP status, JSON body, extra headers.
pub struct Answer {
    /// `200 OK`, `400 Bad Request`, ...
    pub status: &'static str,
    /// The JSON body.
    pub body: Value,
    /// `WWW-Authenticate` for a 401.
    pub challenge: bool,
}

impl Answer {
    fn error(status: &'static str, sqlstate: &str, message: impl Into<String>) -> Answer {
        Answer {
            status,
            body: json!({"error": message.into(), "sqlstate": sqlstate}),
            challenge: status.starts_with("401"),
        }
    }
}

/// Who may use `/query`: the configured users, or everyone when there are
/// none and trust is allowed (the HTTP address is loopback, or the server
/// runs with `--insecure-trust`).
pub enum QueryAccess {
    /// Check HTTP Basic credentials against the users' verifiers.
    Users(Credentials),
    /// No users: everyone is trusted.
    Trust,
    /// No users, and the address other machines reach: nobody.
    Refused,
}

/// Answers a `/query` request with `body` and the `Authorization` header.
/// Blocking (password hashing, the statement): run it off the runtime.
pub fn answer(
    db: &Database,
    access: &QueryAccess,
    authorization: Option<&str>,
    body: &[u8],
) -> Answer {
    let user = match access {
        QueryAccess::Refused => {
            return Answer::error(
                "403 Forbidden",
                "28000",
                "/query needs users when HTTP listens on an address other machines can reach",
            )
        }
        QueryAccess::Trust => "sluice".to_string(),
        QueryAccess::Users(credentials) => match basic_credentials(authorization) {
            Some((user, password)) if credentials.check_password(&user, &password).is_some() => {
                user
            }
            Some((user, _)) => {
                return Answer::error(
                    "401 Unauthorized",
                    "28P01",
                    format!("password authentication failed for user \"{user}\""),
                )
            }
            None => {
                return Answer::error(
                    "401 Unauthorized",
                    "28000",
                    "HTTP Basic credentials required",
                )
            }
        },
    };
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Answer::error(
                "400 Bad Request",
                "22P02",
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let Some(sql) = request.get("sql").and_then(Value::as_str) else {
        return Answer::error(
            "400 Bad Request",
            "22023",
            "the body needs \"sql\": a statement",
        );
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values.clone(),
        Some(_) => return Answer::error("400 Bad Request", "22023", "\"params\" must be an array"),
    };
    match run(db, &user, sql, &params) {
        Ok(body) => Answer {
            status: "200 OK",
            body,
            challenge: false,
        },
        Err((status, e)) => Answer::error(status, e.sqlstate(), e.to_string()),
    }
}

/// Parses, checks and runs the statement; its rows as JSON.
fn run(
    db: &Database,
    user: &str,
    sql: &str,
    params: &[Value],
) -> Result<Value, (&'static str, sluice_query::Error)> {
    let bad = |e| ("400 Bad Request", e);
    let mut statements = sluice_query::engine::parse_sql(sql).map_err(bad)?;
    if statements.len() != 1 {
        return Err(bad(sluice_query::Error::Syntax(format!(
            "/query runs exactly one statement, not {}",
            statements.len()
        ))));
    }
    let stmt = statements.remove(0);
    if !read_only(&stmt) {
        return Err((
            "403 Forbidden",
            sluice_query::Error::InsufficientPrivilege(
                "/query runs SELECT, EXPLAIN and SHOW only".into(),
            ),
        ));
    }
    let mut session = db.session_for(user, "sluice");
    // A reader, whatever the user may do over PostgreSQL: the endpoint
    // promises read-only.
    session.set_role(Role::Reader);
    let description = db
        .engine()
        .describe(&stmt, &session, Vec::new())
        .map_err(bad)?;
    if description.params.len() != params.len() {
        return Err(bad(sluice_query::Error::Protocol(format!(
            "the statement has {} parameters but {} were given",
            description.params.len(),
            params.len()
        ))));
    }
    let zone = session.query_options().zone;
    let bound = description
        .params
        .iter()
        .zip(params)
        .enumerate()
        .map(|(i, (ty, value))| param(i, ty, value, zone))
        .collect::<Result<Vec<Param>, _>>()
        .map_err(bad)?;
    let result = db
        .engine()
        .execute(
            &stmt,
            &mut session,
            &bound,
            Arc::new(AtomicBool::new(false)),
        )
        .map_err(bad)?;
    Ok(rows_json(result, zone))
}

/// SELECT (WITH, VALUES), EXPLAIN of one, and SHOW.
fn read_only(stmt: &Statement) -> bool {
    match stmt {
        Statement::Query(_) | Statement::ShowVariable { .. } => true,
        Statement::Explain { statement, .. } => matches!(statement.as_ref(), Statement::Query(_)),
        _ => false,
    }
}

/// A JSON value as parameter `i` of type `ty`, read as PostgreSQL reads the
/// text a driver sends: numbers and booleans by their JSON text, strings as
/// they are, `null` as NULL.
fn param(
    i: usize,
    ty: &DataType,
    value: &Value,
    zone: sluice_storage::zone::Zone,
) -> Result<Param, sluice_query::Error> {
    let text = match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err(sluice_query::Error::InvalidText {
                message: format!(
                    "invalid value for parameter ${}: arrays and objects are not parameter values",
                    i + 1
                ),
                sqlstate: "22P02",
            })
        }
        other => Some(other.to_string()),
    };
    let wire = super::encode::pg_type(ty);
    super::params::decode(i, &wire, text.as_deref().map(str::as_bytes), false, zone)
}

/// `{"columns": [{"name", "type"}], "rows": [[...]], "row_count": n}`, or
/// `{"command": tag}`. Integers and floats are JSON numbers (NaN and
/// infinities as text), booleans JSON booleans, NULL null; everything else,
/// NUMERIC included (every digit kept), is the text psql shows.
fn rows_json(result: StatementResult, zone: sluice_storage::zone::Zone) -> Value {
    let (schema, batches) = match result {
        StatementResult::Rows { schema, batches } => (schema, batches),
        StatementResult::Command { tag } => return json!({ "command": tag }),
    };
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": super::encode::pg_type(f.data_type()).name()}))
        .collect();
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| cell(column.as_ref(), row, zone))
                .collect::<Vec<Value>>();
            rows.push(Value::Array(values));
        }
    }
    json!({"columns": columns, "row_count": rows.len(), "rows": rows})
}

fn cell(array: &dyn Array, row: usize, zone: sluice_storage::zone::Zone) -> Value {
    let text = match sluice_query::format::format_value(array, row, zone) {
        Ok(Some(text)) => text,
        Ok(None) => return Value::Null,
        Err(e) => return Value::String(format!("<{e}>")),
    };
    match array.data_type() {
        DataType::Boolean => Value::Bool(text == "t"),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => serde_json::from_str::<serde_json::Number>(&text)
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

/// The user and password of an `Authorization: Basic ...` header.
fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = header?.trim().strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
