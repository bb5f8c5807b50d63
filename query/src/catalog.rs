//! `pg_catalog` and `information_schema`: virtual tables built from Sluice's own
//! catalog at the moment a statement is bound, so a new table shows up at once.
//! They are ordinary tables to the engine: psql's `\d`, SQLAlchemy's reflection and
//! pgjdbc's metadata queries run on the same operators as any other query.
//!
//! OIDs are stable: built-in types use PostgreSQL's own OIDs; a table's OID is
//! `16384 + 2 * id` (its primary-key index `+ 1`), where `id` is its number in the
//! data directory.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use sluice_storage::{Catalog, ColumnType, Table};

use crate::error::{Error, Result};
use crate::session::Session;

/// OID of schema `pg_catalog`.
pub const PG_CATALOG_OID: i64 = 11;
/// OID of schema `public`.
pub const PUBLIC_OID: i64 = 2200;
/// OID of schema `information_schema`.
pub const INFORMATION_SCHEMA_OID: i64 = 13_000;
/// OID of the one role.
pub const ROLE_OID: i64 = 10;
/// OID of the database.
pub const DATABASE_OID: i64 = 16_383;

/// The OID of a stored table.
pub fn table_oid(t: &Table) -> i64 {
    16_384 + 2 * t.id() as i64
}

/// PostgreSQL's OID, name, length and category for each type Sluice reports.
pub const TYPES: &[(i64, &str, i32, &str)] = &[
    (16, "bool", 1, "B"),
    (17, "bytea", -1, "U"),
    (18, "char", 1, "Z"),
    (19, "name", 64, "S"),
    (20, "int8", 8, "N"),
    (21, "int2", 2, "N"),
    (23, "int4", 4, "N"),
    (24, "regproc", 4, "N"),
    (25, "text", -1, "S"),
    (26, "oid", 4, "N"),
    (114, "json", -1, "U"),
    (700, "float4", 4, "N"),
    (701, "float8", 8, "N"),
    (705, "unknown", -2, "X"),
    (1007, "_int4", -1, "A"),
    (1009, "_text", -1, "A"),
    (1016, "_int8", -1, "A"),
    (1042, "bpchar", -1, "S"),
    (1043, "varchar", -1, "S"),
    (1082, "date", 4, "D"),
    (1083, "time", 8, "D"),
    (1114, "timestamp", 8, "D"),
    (1184, "timestamptz", 8, "D"),
    (1186, "interval", 16, "T"),
    (1700, "numeric", -1, "N"),
    (2205, "regclass", 4, "N"),
    (2206, "regtype", 4, "N"),
    (2950, "uuid", 16, "U"),
    (3802, "jsonb", -1, "U"),
];

/// A type's input/output function name as `pg_type` lists it (`int4in`); every
/// array type shares `array_in` and friends, which drivers test for.
fn io_function(type_name: &str, suffix: &str) -> String {
    if type_name.starts_with('_') {
        format!("array_{suffix}")
    } else {
        format!("{type_name}{suffix}")
    }
}

/// The pg_type OID of a stored column type.
pub fn column_type_oid(t: ColumnType) -> i64 {
    match t {
        ColumnType::Boolean => 16,
        ColumnType::Integer => 23,
        ColumnType::BigInt => 20,
        ColumnType::Double => 701,
        ColumnType::Text => 25,
        ColumnType::Timestamp => 1114,
        ColumnType::TimestampTz => 1184,
        ColumnType::Numeric { .. } => 1700,
    }
}

/// A stored column type's `atttypmod`: PostgreSQL's `((precision << 16) | scale)
/// + 4` for numeric(p, s), -1 where the type has no modifier.
pub fn column_typmod(t: ColumnType) -> i64 {
    match t {
        ColumnType::Numeric { precision, scale } => {
            ((i64::from(precision) << 16) | i64::from(scale)) + 4
        }
        _ => -1,
    }
}

/// `format_type(oid, typmod)`: the type's name with its modifier, as
/// `numeric(10,2)`.
pub fn format_type_mod(oid: i64, typmod: Option<i64>) -> Option<String> {
    let name = format_type(oid)?;
    Some(match typmod {
        Some(m) if oid == 1700 && m >= 4 => {
            let m = m - 4;
            format!("numeric({},{})", m >> 16, m & 0xffff)
        }
        _ => name.to_string(),
    })
}

/// `format_type(oid, typmod)`: the SQL name of a type OID.
pub fn format_type(oid: i64) -> Option<&'static str> {
    Some(match oid {
        16 => "boolean",
        17 => "bytea",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        24 => "regproc",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "real",
        701 => "double precision",
        705 => "unknown",
        1007 => "integer[]",
        1009 => "text[]",
        1016 => "bigint[]",
        1042 => "character",
        1043 => "character varying",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 => "numeric",
        2205 => "regclass",
        2206 => "regtype",
        2950 => "uuid",
        3802 => "jsonb",
        _ => return None,
    })
}

/// The OID of a type by name (for `'int4'::regtype`), accepting SQL spellings.
pub fn type_oid_by_name(name: &str) -> Option<i64> {
    let n = name
        .trim()
        .trim_start_matches("pg_catalog.")
        .to_ascii_lowercase();
    let canonical = match n.as_str() {
        "boolean" => "bool",
        "bigint" => "int8",
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "double precision" => "float8",
        "real" => "float4",
        "character varying" => "varchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        other => other,
    };
    TYPES.iter().find(|t| t.1 == canonical).map(|t| t.0)
}

/// Catalog columns of type `oid`.
const OID_COLUMNS: &[&str] = &[
    "oid",
    "relnamespace",
    "reltype",
    "reloftype",
    "relowner",
    "relam",
    "relfilenode",
    "reltablespace",
    "reltoastrelid",
    "relrewrite",
    "attrelid",
    "atttypid",
    "attcollation",
    "typnamespace",
    "typowner",
    "typrelid",
    "typelem",
    "typarray",
    "typbasetype",
    "typcollation",
    "datdba",
    "dattablespace",
    "indexrelid",
    "indrelid",
    "connamespace",
    "conrelid",
    "contypid",
    "conindid",
    "conparentid",
    "confrelid",
    "nspowner",
    "usesysid",
    "relid",
    "collnamespace",
    "collowner",
    "objoid",
    "classoid",
    "adrelid",
    "inhrelid",
    "inhparent",
    "pronamespace",
    "proowner",
    "prolang",
    "prorettype",
    "enumtypid",
    "rngtypid",
    "rngsubtype",
    "rngmultitypid",
    "rngcollation",
    "rngsubopc",
    "extowner",
    "extnamespace",
    "tgrelid",
    "tgparentid",
    "tgfoid",
    "tgconstraint",
    "ev_class",
    "polrelid",
    "stxrelid",
    "stxnamespace",
    "stxowner",
    "pubowner",
    "prpubid",
    "prrelid",
    "pnpubid",
    "pnnspid",
    "ftrelid",
    "ftserver",
    "srvowner",
    "srvfdw",
    "partrelid",
    "partdefid",
    "seqrelid",
    "seqtypid",
    "classid",
    "objid",
    "refclassid",
    "refobjid",
    "spcowner",
    "evtowner",
    "evtfoid",
    "castsource",
    "casttarget",
    "castfunc",
    "oprnamespace",
    "oprowner",
    "oprleft",
    "oprright",
    "oprresult",
    "lanowner",
    "opcmethod",
    "opcnamespace",
    "opcowner",
    "opcfamily",
    "opcintype",
    "opckeytype",
    "roleid",
    "member",
    "grantor",
    "datid",
];

/// One cell of a catalog row.
enum V {
    I(i64),
    S(String),
    B(bool),
    F(f64),
    Bytes(Vec<u8>),
    N,
}

fn s(x: &str) -> V {
    V::S(x.to_string())
}

/// Catalog columns holding arrays of smallints (column positions), as
/// `int2vector` (`1 2`) or `int2[]` (`{1,2}`) text.
const INT_VECTOR_COLUMNS: &[&str] = &["indkey", "conkey", "confkey", "indoption"];

/// Field metadata naming the element type of an array held as text.
pub const ELEMENT_TYPE_KEY: &str = "sluice.element";

/// Builds a catalog table column by column from rows of [`V`].
struct TableBuilder {
    columns: Vec<(&'static str, DataType)>,
    rows: Vec<Vec<V>>,
}

impl TableBuilder {
    fn new(columns: &[(&'static str, DataType)]) -> Self {
        // Columns that hold OIDs have PostgreSQL's `oid` type.
        let columns = columns
            .iter()
            .map(|(n, t)| {
                if *t == DataType::Int64 && OID_COLUMNS.contains(n) {
                    (*n, DataType::UInt32)
                } else {
                    (*n, t.clone())
                }
            })
            .collect();
        TableBuilder {
            columns,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, row: Vec<V>) {
        self.rows.push(row);
    }

    fn finish(self) -> Result<RecordBatch> {
        let schema = Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, t)| {
                    let field = Field::new(*n, t.clone(), true);
                    match INT_VECTOR_COLUMNS.contains(n) {
                        // Arrays are kept in their text form; unnest needs
                        // to know these hold smallints.
                        true => field.with_metadata(std::collections::HashMap::from([(
                            ELEMENT_TYPE_KEY.to_string(),
                            "int2".to_string(),
                        )])),
                        false => field,
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (c, (name, ty)) in self.columns.iter().enumerate() {
            fn cell<'r>(r: &'r [V], c: usize, name: &str) -> Result<&'r V> {
                r.get(c)
                    .ok_or_else(|| Error::Internal(format!("catalog row lacks column {name}")))
            }
            let array: ArrayRef = match ty {
                DataType::Int64 => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::I(v) => Some(*v),
                                _ => None,
                            })
                        })
                        .collect::<Result<Int64Array>>()?,
                ),
                DataType::UInt32 => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::I(v) => u32::try_from(*v).ok(),
                                _ => None,
                            })
                        })
                        .collect::<Result<arrow::array::UInt32Array>>()?,
                ),
                DataType::Int32 => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::I(v) => Some(*v as i32),
                                _ => None,
                            })
                        })
                        .collect::<Result<Int32Array>>()?,
                ),
                DataType::Boolean => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::B(v) => Some(*v),
                                _ => None,
                            })
                        })
                        .collect::<Result<BooleanArray>>()?,
                ),
                DataType::Timestamp(_, _) => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::I(v) => Some(*v),
                                _ => None,
                            })
                        })
                        .collect::<Result<arrow::array::TimestampMicrosecondArray>>()?
                        .with_timezone("UTC"),
                ),
                DataType::Float64 => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::F(v) => Some(*v),
                                _ => None,
                            })
                        })
                        .collect::<Result<Float64Array>>()?,
                ),
                DataType::Binary => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::Bytes(v) => Some(v.as_slice()),
                                _ => None,
                            })
                        })
                        .collect::<Result<arrow::array::BinaryArray>>()?,
                ),
                _ => Arc::new(
                    self.rows
                        .iter()
                        .map(|r| {
                            Ok(match cell(r, c, name)? {
                                V::S(v) => Some(v.clone()),
                                _ => None,
                            })
                        })
                        .collect::<Result<StringArray>>()?,
                ),
            };
            arrays.push(array);
        }
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

use DataType::{Boolean as B, Float64 as F, Int32 as I4, Int64 as I8, Utf8 as T};

/// Builds one catalog table from the stored tables, the user and the database name.
type CatalogBuilder = dyn Fn(&[Arc<Table>], &str, &str) -> Result<RecordBatch>;

/// The virtual table for a (schema, name) pair, or `None` if there is none.
/// `schema` is `None` for an unqualified name, which finds `pg_catalog` tables
/// (PostgreSQL searches `pg_catalog` first).
pub fn virtual_table(
    schema: Option<&str>,
    name: &str,
    catalog: &Catalog,
    session: Option<&Session>,
) -> Option<Result<RecordBatch>> {
    let in_pg = matches!(schema, None | Some("pg_catalog"));
    let in_info = schema == Some("information_schema");
    if schema == Some("sluice") {
        return match name {
            "segments" => Some(sluice_segments(&catalog.tables())),
            "ingestion" => Some(sluice_ingestion(&catalog.tables())),
            "dead_letters" => Some(sluice_dead_letters(&catalog.tables())),
            "retention" => Some(sluice_retention(&catalog.tables())),
            "upserts" => Some(sluice_upserts(&catalog.tables())),
            _ => None,
        };
    }
    let user = session.map_or("sluice", Session::user).to_string();
    let database = session.map_or("sluice", Session::database).to_string();
    let tables = catalog.tables();
    let build = |f: &CatalogBuilder| Some(f(&tables, &user, &database));
    match (in_pg, in_info, name) {
        (true, _, "pg_namespace") => build(&pg_namespace),
        (true, _, "pg_class") => build(&pg_class),
        (true, _, "pg_attribute") => build(&pg_attribute),
        (true, _, "pg_type") => build(&pg_type),
        (true, _, "pg_database") => build(&pg_database),
        (true, _, "pg_index") => build(&pg_index),
        (true, _, "pg_constraint") => build(&pg_constraint),
        (true, _, "pg_am") => build(&pg_am),
        (true, _, "pg_roles") | (true, _, "pg_authid") => build(&pg_roles),
        (true, _, "pg_user") => build(&pg_user),
        (true, _, "pg_tables") => build(&pg_tables),
        (true, _, "pg_stat_user_tables") | (true, _, "pg_stat_all_tables") => {
            build(&pg_stat_user_tables)
        }
        (true, _, "pg_collation") => build(&pg_collation),
        (true, _, "pg_settings") => Some(pg_settings(session)),
        (true, _, "pg_stat_activity") => Some(pg_stat_activity()),
        (true, _, other) => empty_pg_table(other).map(|cols| TableBuilder::new(cols).finish()),
        (_, true, "schemata") => build(&info_schemata),
        (_, true, "tables") => build(&info_tables),
        (_, true, "columns") => build(&info_columns),
        (_, true, "table_constraints") => build(&info_table_constraints),
        (_, true, "key_column_usage") => build(&info_key_column_usage),
        (_, true, "views") => Some(
            TableBuilder::new(&[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("view_definition", T),
                ("check_option", T),
                ("is_updatable", T),
                ("is_insertable_into", T),
            ])
            .finish(),
        ),
        _ => None,
    }
}

/// Catalog tables Sluice has nothing to put in, with the columns clients read.
fn empty_pg_table(name: &str) -> Option<&'static [(&'static str, DataType)]> {
    Some(match name {
        "pg_description" | "pg_shdescription" => &[
            ("objoid", I8),
            ("classoid", I8),
            ("objsubid", I4),
            ("description", T),
        ],
        "pg_attrdef" => &[("oid", I8), ("adrelid", I8), ("adnum", I4), ("adbin", T)],
        "pg_inherits" => &[
            ("inhrelid", I8),
            ("inhparent", I8),
            ("inhseqno", I4),
            ("inhdetachpending", B),
        ],
        "pg_proc" => &[
            ("oid", I8),
            ("proname", T),
            ("pronamespace", I8),
            ("proowner", I8),
            ("prolang", I8),
            ("prokind", T),
            ("proretset", B),
            ("prorettype", I8),
            ("proargtypes", T),
            ("proallargtypes", T),
            ("proargmodes", T),
            ("proargnames", T),
            ("prosrc", T),
        ],
        "pg_views" => &[
            ("schemaname", T),
            ("viewname", T),
            ("viewowner", T),
            ("definition", T),
        ],
        "pg_matviews" => &[
            ("schemaname", T),
            ("matviewname", T),
            ("matviewowner", T),
            ("tablespace", T),
            ("hasindexes", B),
            ("ispopulated", B),
            ("definition", T),
        ],
        "pg_enum" => &[
            ("oid", I8),
            ("enumtypid", I8),
            ("enumsortorder", F),
            ("enumlabel", T),
        ],
        "pg_range" => &[
            ("rngtypid", I8),
            ("rngsubtype", I8),
            ("rngmultitypid", I8),
            ("rngcollation", I8),
            ("rngsubopc", I8),
        ],
        "pg_extension" => &[
            ("oid", I8),
            ("extname", T),
            ("extowner", I8),
            ("extnamespace", I8),
            ("extrelocatable", B),
            ("extversion", T),
        ],
        "pg_trigger" => &[
            ("oid", I8),
            ("tgrelid", I8),
            ("tgparentid", I8),
            ("tgname", T),
            ("tgfoid", I8),
            ("tgtype", I4),
            ("tgenabled", T),
            ("tgisinternal", B),
            ("tgconstraint", I8),
        ],
        "pg_rewrite" => &[
            ("oid", I8),
            ("rulename", T),
            ("ev_class", I8),
            ("ev_type", T),
            ("ev_enabled", T),
            ("is_instead", B),
        ],
        "pg_policy" => &[
            ("oid", I8),
            ("polname", T),
            ("polrelid", I8),
            ("polcmd", T),
            ("polpermissive", B),
            ("polroles", T),
            ("polqual", T),
            ("polwithcheck", T),
        ],
        "pg_statistic_ext" => &[
            ("oid", I8),
            ("stxrelid", I8),
            ("stxname", T),
            ("stxnamespace", I8),
            ("stxowner", I8),
            ("stxstattarget", I4),
            ("stxkeys", T),
            ("stxkind", T),
        ],
        "pg_publication" => &[
            ("oid", I8),
            ("pubname", T),
            ("pubowner", I8),
            ("puballtables", B),
            ("pubinsert", B),
            ("pubupdate", B),
            ("pubdelete", B),
            ("pubtruncate", B),
            ("pubviaroot", B),
        ],
        "pg_publication_rel" => &[
            ("oid", I8),
            ("prpubid", I8),
            ("prrelid", I8),
            ("prqual", T),
            ("prattrs", T),
        ],
        "pg_publication_namespace" => &[("oid", I8), ("pnpubid", I8), ("pnnspid", I8)],
        "pg_foreign_table" => &[("ftrelid", I8), ("ftserver", I8), ("ftoptions", T)],
        "pg_foreign_server" => &[
            ("oid", I8),
            ("srvname", T),
            ("srvowner", I8),
            ("srvfdw", I8),
            ("srvtype", T),
            ("srvversion", T),
            ("srvacl", T),
            ("srvoptions", T),
        ],
        "pg_partitioned_table" => &[
            ("partrelid", I8),
            ("partstrat", T),
            ("partnatts", I4),
            ("partdefid", I8),
            ("partattrs", T),
        ],
        "pg_sequence" => &[
            ("seqrelid", I8),
            ("seqtypid", I8),
            ("seqstart", I8),
            ("seqincrement", I8),
            ("seqmax", I8),
            ("seqmin", I8),
            ("seqcache", I8),
            ("seqcycle", B),
        ],
        "pg_depend" => &[
            ("classid", I8),
            ("objid", I8),
            ("objsubid", I4),
            ("refclassid", I8),
            ("refobjid", I8),
            ("refobjsubid", I4),
            ("deptype", T),
        ],
        "pg_tablespace" => &[
            ("oid", I8),
            ("spcname", T),
            ("spcowner", I8),
            ("spcacl", T),
            ("spcoptions", T),
        ],
        "pg_event_trigger" => &[
            ("oid", I8),
            ("evtname", T),
            ("evtevent", T),
            ("evtowner", I8),
            ("evtfoid", I8),
            ("evtenabled", T),
            ("evttags", T),
        ],
        "pg_cast" => &[
            ("oid", I8),
            ("castsource", I8),
            ("casttarget", I8),
            ("castfunc", I8),
            ("castcontext", T),
            ("castmethod", T),
        ],
        "pg_operator" => &[
            ("oid", I8),
            ("oprname", T),
            ("oprnamespace", I8),
            ("oprowner", I8),
            ("oprkind", T),
            ("oprleft", I8),
            ("oprright", I8),
            ("oprresult", I8),
        ],
        "pg_language" => &[
            ("oid", I8),
            ("lanname", T),
            ("lanowner", I8),
            ("lanispl", B),
            ("lanpltrusted", B),
        ],
        "pg_opclass" => &[
            ("oid", I8),
            ("opcmethod", I8),
            ("opcname", T),
            ("opcnamespace", I8),
            ("opcowner", I8),
            ("opcfamily", I8),
            ("opcintype", I8),
            ("opcdefault", B),
            ("opckeytype", I8),
        ],
        "pg_auth_members" => &[
            ("oid", I8),
            ("roleid", I8),
            ("member", I8),
            ("grantor", I8),
            ("admin_option", B),
        ],
        _ => return None,
    })
}

/// The live sessions ([`crate::activity`]), with PostgreSQL's columns.
fn pg_stat_activity() -> Result<RecordBatch> {
    let z = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    let mut b = TableBuilder::new(&[
        ("datid", I8),
        ("datname", T),
        ("pid", I4),
        ("leader_pid", I4),
        ("usesysid", I8),
        ("usename", T),
        ("application_name", T),
        ("client_addr", T),
        ("client_hostname", T),
        ("client_port", I4),
        ("backend_start", z.clone()),
        ("xact_start", z.clone()),
        ("query_start", z.clone()),
        ("state_change", z),
        ("wait_event_type", T),
        ("wait_event", T),
        ("state", T),
        ("backend_xid", T),
        ("backend_xmin", T),
        ("query_id", I8),
        ("query", T),
        ("backend_type", T),
    ]);
    for r in crate::activity::activity().rows() {
        let i = r.info;
        let (addr, port) = match i.client_addr.rsplit_once(':') {
            Some((a, p)) => (a.trim_matches(['[', ']']).to_string(), p.parse().ok()),
            None => (i.client_addr.clone(), None),
        };
        b.row(vec![
            V::I(DATABASE_OID),
            V::S(i.database),
            V::I(i.pid.into()),
            V::N,
            V::N,
            V::S(i.user),
            V::S(i.application_name),
            V::S(addr),
            V::N,
            port.map_or(V::N, V::I),
            V::I(i.backend_start),
            V::N,
            r.query_start.map_or(V::N, V::I),
            r.query_start.map_or(V::N, V::I),
            V::N,
            V::N,
            s(r.state),
            V::N,
            V::N,
            V::N,
            V::S(r.query),
            s("client backend"),
        ]);
    }
    b.finish()
}

fn pg_namespace(_: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[("oid", I8), ("nspname", T), ("nspowner", I8), ("nspacl", T)]);
    for (oid, name) in [
        (PG_CATALOG_OID, "pg_catalog"),
        (PUBLIC_OID, "public"),
        (INFORMATION_SCHEMA_OID, "information_schema"),
    ] {
        b.row(vec![V::I(oid), s(name), V::I(ROLE_OID), V::N]);
    }
    b.finish()
}

fn pg_class(tables: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("oid", I8),
        ("relname", T),
        ("relnamespace", I8),
        ("reltype", I8),
        ("reloftype", I8),
        ("relowner", I8),
        ("relam", I8),
        ("relfilenode", I8),
        ("reltablespace", I8),
        ("relpages", I4),
        ("reltuples", F),
        ("relallvisible", I4),
        ("reltoastrelid", I8),
        ("relhasindex", B),
        ("relisshared", B),
        ("relpersistence", T),
        ("relkind", T),
        ("relnatts", I4),
        ("relchecks", I4),
        ("relhasrules", B),
        ("relhastriggers", B),
        ("relhassubclass", B),
        ("relrowsecurity", B),
        ("relforcerowsecurity", B),
        ("relispopulated", B),
        ("relreplident", T),
        ("relispartition", B),
        ("relrewrite", I8),
        ("relacl", T),
        ("reloptions", T),
        ("relpartbound", T),
    ]);
    for t in tables {
        let oid = table_oid(t);
        let has_pk = !t.schema().primary_key.is_empty();
        let row = |oid: i64, name: String, kind: &str, natts: usize, am: i64, tuples: f64| {
            vec![
                V::I(oid),
                V::S(name),
                V::I(PUBLIC_OID),
                V::I(0),
                V::I(0),
                V::I(ROLE_OID),
                V::I(am),
                V::I(oid),
                V::I(0),
                V::I(0),
                V::F(tuples),
                V::I(0),
                V::I(0),
                V::B(has_pk && kind == "r"),
                V::B(false),
                s("p"),
                s(kind),
                V::I(natts as i64),
                V::I(0),
                V::B(false),
                V::B(false),
                V::B(false),
                V::B(false),
                V::B(false),
                V::B(true),
                s("d"),
                V::B(false),
                V::I(0),
                V::N,
                V::N,
                V::N,
            ]
        };
        b.row(row(
            oid,
            t.name().to_string(),
            "r",
            t.schema().columns.len(),
            2,
            t.rows() as f64,
        ));
        if has_pk {
            b.row(row(
                oid + 1,
                format!("{}_pkey", t.name()),
                "i",
                t.schema().primary_key.len(),
                403,
                0.0,
            ));
        }
    }
    b.finish()
}

fn pg_attribute(tables: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("attrelid", I8),
        ("attname", T),
        ("atttypid", I8),
        ("attstattarget", I4),
        ("attlen", I4),
        ("attnum", I4),
        ("attndims", I4),
        ("attcacheoff", I4),
        ("atttypmod", I4),
        ("attbyval", B),
        ("attalign", T),
        ("attstorage", T),
        ("attcompression", T),
        ("attnotnull", B),
        ("atthasdef", B),
        ("atthasmissing", B),
        ("attidentity", T),
        ("attgenerated", T),
        ("attisdropped", B),
        ("attislocal", B),
        ("attinhcount", I4),
        ("attcollation", I8),
        ("attacl", T),
        ("attoptions", T),
        ("attfdwoptions", T),
        ("attmissingval", T),
    ]);
    for t in tables {
        let oid = table_oid(t);
        for (i, c) in t.schema().columns.iter().enumerate() {
            let type_oid = column_type_oid(c.ty);
            let len = TYPES.iter().find(|x| x.0 == type_oid).map_or(-1, |x| x.2);
            let collation = if c.ty == ColumnType::Text { 100 } else { 0 };
            b.row(vec![
                V::I(oid),
                V::S(c.name.clone()),
                V::I(type_oid),
                V::I(-1),
                V::I(len as i64),
                V::I(i as i64 + 1),
                V::I(0),
                V::I(-1),
                V::I(column_typmod(c.ty)),
                V::B(len > 0 && len <= 8),
                s("d"),
                s(if len < 0 { "x" } else { "p" }),
                s(""),
                V::B(!c.nullable),
                V::B(false),
                V::B(false),
                s(""),
                s(""),
                V::B(false),
                V::B(true),
                V::I(0),
                V::I(collation),
                V::N,
                V::N,
                V::N,
                V::N,
            ]);
        }
        for (i, key) in t.schema().primary_key.iter().enumerate() {
            if let Some(c) = t.schema().columns.iter().find(|c| &c.name == key) {
                b.row(vec![
                    V::I(oid + 1),
                    V::S(c.name.clone()),
                    V::I(column_type_oid(c.ty)),
                    V::I(-1),
                    V::I(-1),
                    V::I(i as i64 + 1),
                    V::I(0),
                    V::I(-1),
                    V::I(-1),
                    V::B(false),
                    s("d"),
                    s("p"),
                    s(""),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    s(""),
                    s(""),
                    V::B(false),
                    V::B(true),
                    V::I(0),
                    V::I(0),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                ]);
            }
        }
    }
    b.finish()
}

fn pg_type(_: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("oid", I8),
        ("typname", T),
        ("typnamespace", I8),
        ("typowner", I8),
        ("typlen", I4),
        ("typbyval", B),
        ("typtype", T),
        ("typcategory", T),
        ("typispreferred", B),
        ("typisdefined", B),
        ("typdelim", T),
        ("typrelid", I8),
        ("typelem", I8),
        ("typarray", I8),
        ("typinput", T),
        ("typoutput", T),
        ("typreceive", T),
        ("typsend", T),
        ("typalign", T),
        ("typstorage", T),
        ("typnotnull", B),
        ("typbasetype", I8),
        ("typtypmod", I4),
        ("typndims", I4),
        ("typcollation", I8),
        ("typdefault", T),
        ("typacl", T),
    ]);
    for (oid, name, len, cat) in TYPES {
        let elem = match *name {
            "_int4" => 23,
            "_text" => 25,
            "_int8" => 20,
            _ => 0,
        };
        let array = match *name {
            "int4" => 1007,
            "text" => 1009,
            "int8" => 1016,
            _ => 0,
        };
        let collation = if ["text", "varchar", "bpchar", "name"].contains(name) {
            100
        } else {
            0
        };
        b.row(vec![
            V::I(*oid),
            s(name),
            V::I(PG_CATALOG_OID),
            V::I(ROLE_OID),
            V::I(*len as i64),
            V::B(*len > 0 && *len <= 8),
            s("b"),
            s(cat),
            V::B(false),
            V::B(true),
            s(","),
            V::I(0),
            V::I(elem),
            V::I(array),
            V::S(io_function(name, "in")),
            V::S(io_function(name, "out")),
            V::S(io_function(name, "recv")),
            V::S(io_function(name, "send")),
            s(if *len == 8 { "d" } else { "i" }),
            s(if *len < 0 { "x" } else { "p" }),
            V::B(false),
            V::I(0),
            V::I(-1),
            V::I(0),
            V::I(collation),
            V::N,
            V::N,
        ]);
    }
    b.finish()
}

fn pg_database(_: &[Arc<Table>], _: &str, database: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("oid", I8),
        ("datname", T),
        ("datdba", I8),
        ("encoding", I4),
        ("datlocprovider", T),
        ("datistemplate", B),
        ("datallowconn", B),
        ("datconnlimit", I4),
        ("datfrozenxid", I8),
        ("datminmxid", I8),
        ("dattablespace", I8),
        ("datcollate", T),
        ("datctype", T),
        ("daticulocale", T),
        ("datcollversion", T),
        ("datacl", T),
    ]);
    b.row(vec![
        V::I(DATABASE_OID),
        s(database),
        V::I(ROLE_OID),
        V::I(6),
        s("c"),
        V::B(false),
        V::B(true),
        V::I(-1),
        V::I(0),
        V::I(1),
        V::I(1663),
        s("C"),
        s("C"),
        V::N,
        V::N,
        V::N,
    ]);
    b.finish()
}

fn pg_index(tables: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("indexrelid", I8),
        ("indrelid", I8),
        ("indnatts", I4),
        ("indnkeyatts", I4),
        ("indisunique", B),
        ("indnullsnotdistinct", B),
        ("indisprimary", B),
        ("indisexclusion", B),
        ("indimmediate", B),
        ("indisclustered", B),
        ("indisvalid", B),
        ("indcheckxmin", B),
        ("indisready", B),
        ("indislive", B),
        ("indisreplident", B),
        ("indkey", T),
        ("indcollation", T),
        ("indclass", T),
        ("indoption", T),
        ("indexprs", T),
        ("indpred", T),
    ]);
    for t in tables {
        let keys = pk_positions(t);
        if keys.is_empty() {
            continue;
        }
        let oid = table_oid(t);
        let n = keys.len() as i64;
        let indkey = keys
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        b.row(vec![
            V::I(oid + 1),
            V::I(oid),
            V::I(n),
            V::I(n),
            V::B(true),
            V::B(false),
            V::B(true),
            V::B(false),
            V::B(true),
            V::B(false),
            V::B(true),
            V::B(false),
            V::B(true),
            V::B(true),
            V::B(false),
            V::S(indkey),
            V::N,
            V::N,
            V::N,
            V::N,
            V::N,
        ]);
    }
    b.finish()
}

fn pk_positions(t: &Table) -> Vec<usize> {
    t.schema()
        .primary_key
        .iter()
        .filter_map(|k| t.schema().column_index(k).map(|i| i + 1))
        .collect()
}

fn pg_constraint(tables: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("oid", I8),
        ("conname", T),
        ("connamespace", I8),
        ("contype", T),
        ("condeferrable", B),
        ("condeferred", B),
        ("convalidated", B),
        ("conrelid", I8),
        ("contypid", I8),
        ("conindid", I8),
        ("conparentid", I8),
        ("confrelid", I8),
        ("confupdtype", T),
        ("confdeltype", T),
        ("confmatchtype", T),
        ("conislocal", B),
        ("coninhcount", I4),
        ("connoinherit", B),
        ("conkey", T),
        ("confkey", T),
        ("conbin", T),
    ]);
    for t in tables {
        let keys = pk_positions(t);
        if keys.is_empty() {
            continue;
        }
        let oid = table_oid(t);
        let conkey = format!(
            "{{{}}}",
            keys.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        b.row(vec![
            V::I(oid + 1),
            V::S(format!("{}_pkey", t.name())),
            V::I(PUBLIC_OID),
            s("p"),
            V::B(false),
            V::B(false),
            V::B(true),
            V::I(oid),
            V::I(0),
            V::I(oid + 1),
            V::I(0),
            V::I(0),
            s(" "),
            s(" "),
            s(" "),
            V::B(true),
            V::I(0),
            V::B(true),
            V::S(conkey),
            V::N,
            V::N,
        ]);
    }
    b.finish()
}

/// `pg_get_constraintdef` / `pg_get_indexdef` text for a table's primary key.
pub fn primary_key_definition(catalog: &Catalog, oid: i64, as_index: bool) -> Option<String> {
    let t = catalog
        .tables()
        .into_iter()
        .find(|t| table_oid(t) + 1 == oid)?;
    let cols = t.schema().primary_key.join(", ");
    Some(if as_index {
        format!(
            "CREATE UNIQUE INDEX {}_pkey ON public.{} USING btree ({cols})",
            t.name(),
            t.name()
        )
    } else {
        format!("PRIMARY KEY ({cols})")
    })
}

/// The name of a stored table by OID (for `oid::regclass`).
pub fn table_name_by_oid(catalog: &Catalog, oid: i64) -> Option<String> {
    catalog
        .tables()
        .into_iter()
        .find_map(|t| (table_oid(&t) == oid).then(|| t.name().to_string()))
}

/// The OID of a stored table by name (for `'t'::regclass`).
pub fn table_oid_by_name(catalog: &Catalog, name: &str) -> Option<i64> {
    let n = name.trim().trim_start_matches("public.").trim_matches('"');
    catalog.table(n).ok().map(|t| table_oid(&t))
}

fn pg_am(_: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[("oid", I8), ("amname", T), ("amhandler", T), ("amtype", T)]);
    b.row(vec![V::I(2), s("heap"), s("heap_tableam_handler"), s("t")]);
    b.row(vec![V::I(403), s("btree"), s("bthandler"), s("i")]);
    b.finish()
}

fn pg_roles(_: &[Arc<Table>], user: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("oid", I8),
        ("rolname", T),
        ("rolsuper", B),
        ("rolinherit", B),
        ("rolcreaterole", B),
        ("rolcreatedb", B),
        ("rolcanlogin", B),
        ("rolreplication", B),
        ("rolconnlimit", I4),
        ("rolpassword", T),
        ("rolvaliduntil", T),
        ("rolbypassrls", B),
        ("rolconfig", T),
    ]);
    b.row(vec![
        V::I(ROLE_OID),
        s(user),
        V::B(true),
        V::B(true),
        V::B(true),
        V::B(true),
        V::B(true),
        V::B(false),
        V::I(-1),
        s("********"),
        V::N,
        V::B(true),
        V::N,
    ]);
    b.finish()
}

fn pg_user(_: &[Arc<Table>], user: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("usename", T),
        ("usesysid", I8),
        ("usecreatedb", B),
        ("usesuper", B),
        ("userepl", B),
        ("usebypassrls", B),
        ("passwd", T),
        ("valuntil", T),
        ("useconfig", T),
    ]);
    b.row(vec![
        s(user),
        V::I(ROLE_OID),
        V::B(true),
        V::B(true),
        V::B(false),
        V::B(true),
        s("********"),
        V::N,
        V::N,
    ]);
    b.finish()
}

fn pg_tables(tables: &[Arc<Table>], user: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("schemaname", T),
        ("tablename", T),
        ("tableowner", T),
        ("tablespace", T),
        ("hasindexes", B),
        ("hasrules", B),
        ("hastriggers", B),
        ("rowsecurity", B),
    ]);
    for t in tables {
        b.row(vec![
            s("public"),
            V::S(t.name().to_string()),
            s(user),
            V::N,
            V::B(!t.schema().primary_key.is_empty()),
            V::B(false),
            V::B(false),
            V::B(false),
        ]);
    }
    b.finish()
}

fn pg_stat_user_tables(tables: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("relid", I8),
        ("schemaname", T),
        ("relname", T),
        ("seq_scan", I8),
        ("seq_tup_read", I8),
        ("idx_scan", I8),
        ("idx_tup_fetch", I8),
        ("n_tup_ins", I8),
        ("n_tup_upd", I8),
        ("n_tup_del", I8),
        ("n_live_tup", I8),
        ("n_dead_tup", I8),
    ]);
    for t in tables {
        let rows = t.rows() as i64;
        b.row(vec![
            V::I(table_oid(t)),
            s("public"),
            V::S(t.name().to_string()),
            V::I(0),
            V::I(0),
            V::N,
            V::N,
            V::I(rows),
            V::I(0),
            V::I(0),
            V::I(rows),
            V::I(0),
        ]);
    }
    b.finish()
}

/// `sluice.segments`: every segment of every table, with its state. A corrupt
/// segment shows the check it failed.
fn sluice_segments(tables: &[Arc<Table>]) -> Result<RecordBatch> {
    let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    let mut b = TableBuilder::new(&[
        ("table_name", T),
        ("segment_id", I8),
        ("state", T),
        ("rows", I8),
        ("bytes", I8),
        ("min_time", ts.clone()),
        ("max_time", ts.clone()),
        ("sealed_at", ts),
        ("error", T),
    ]);
    let opt = |v: Option<i64>| v.map_or(V::N, V::I);
    for t in tables {
        for seg in t.segment_states() {
            b.row(vec![
                V::S(t.name().to_string()),
                V::I(seg.id as i64),
                s(seg.state),
                V::I(seg.rows as i64),
                opt(seg.bytes.map(|b| b as i64)),
                opt(seg.time_min),
                opt(seg.time_max),
                opt(seg.created_micros),
                seg.error.map_or(V::N, V::S),
            ]);
        }
    }
    b.finish()
}

/// `sluice.retention`: per table, its retention, the cutoff queries apply now,
/// and what retention has removed since the database was opened.
fn sluice_retention(tables: &[Arc<Table>]) -> Result<RecordBatch> {
    let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    let mut b = TableBuilder::new(&[
        ("table_name", T),
        ("retention", T),
        ("cutoff", ts.clone()),
        ("segments_evicted", I8),
        ("rows_evicted", I8),
        ("rows_expired_on_arrival", I8),
        ("last_eviction", ts),
    ]);
    let opt = |v: Option<i64>| v.map_or(V::N, V::I);
    for t in tables {
        let options = &t.schema().options;
        let retention = match (&options.time_column, options.get("retention")) {
            (None, _) => "none",
            (Some(_), Some(r)) => r,
            (Some(_), None) => sluice_storage::schema::DEFAULT_RETENTION,
        };
        let stats = t.retention_stats();
        b.row(vec![
            V::S(t.name().to_string()),
            V::S(retention.to_string()),
            opt(t.retention_cutoff()),
            V::I(stats.segments_evicted as i64),
            V::I(stats.rows_evicted as i64),
            V::I(stats.rows_expired_on_arrival as i64),
            opt(stats.last_eviction_micros),
        ]);
    }
    b.finish()
}

/// `sluice.upserts`: per upsert or dedup table, its key map and what the
/// apply step decided since the database was opened.
fn sluice_upserts(tables: &[Arc<Table>]) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("table_name", T),
        ("keys", I8),
        ("key_map_bytes", I8),
        ("superseded_rows", I8),
        ("replaced", I8),
        ("out_of_order", I8),
        ("duplicates", I8),
        ("deletes", I8),
        ("keys_in_two_partitions", I8),
    ]);
    for t in tables {
        let Some(r) = t.upsert_report() else { continue };
        let i = |v: u64| V::I(v as i64);
        b.row(vec![
            V::S(t.name().to_string()),
            i(r.keys),
            i(r.map_bytes),
            i(r.superseded_rows),
            i(r.stats.replaced),
            i(r.stats.out_of_order),
            i(r.stats.duplicates),
            i(r.stats.deletes),
            i(r.stats.keys_in_two_partitions),
        ]);
    }
    b.finish()
}

/// `sluice.ingestion`: one row per source partition of every source table.
fn sluice_ingestion(tables: &[Arc<Table>]) -> Result<RecordBatch> {
    let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    let mut b = TableBuilder::new(&[
        ("table_name", T),
        ("partition", I4),
        ("committed_offset", I8),
        ("consumed_offset", I8),
        ("high_watermark", I8),
        ("lag", I8),
        ("last_message_time", ts),
        ("state", T),
        ("last_error", T),
    ]);
    let opt = |v: Option<i64>| v.map_or(V::N, V::I);
    for t in tables.iter().filter(|t| t.schema().options.has_source()) {
        let committed = t.committed_offsets();
        let consumed = t.consumed_offsets();
        let status = t.source_status();
        let partitions: std::collections::BTreeSet<i32> = committed
            .keys()
            .chain(consumed.keys())
            .chain(status.keys())
            .copied()
            .collect();
        for p in partitions {
            let st = status.get(&p).cloned().unwrap_or_default();
            let position = consumed.get(&p).copied();
            let lag = match (st.high_watermark, position) {
                (Some(h), Some(pos)) => Some((h - pos).max(0)),
                _ => None,
            };
            b.row(vec![
                V::S(t.name().to_string()),
                V::I(i64::from(p)),
                opt(committed.get(&p).copied()),
                opt(position),
                opt(st.high_watermark),
                opt(lag),
                opt(st.last_message_micros),
                V::S(if st.state.is_empty() {
                    "starting".into()
                } else {
                    st.state
                }),
                st.last_error.map_or(V::N, V::S),
            ]);
        }
    }
    b.finish()
}

/// `sluice.dead_letters`: every message of a source that did not become a row.
fn sluice_dead_letters(tables: &[Arc<Table>]) -> Result<RecordBatch> {
    let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    let mut b = TableBuilder::new(&[
        ("table_name", T),
        ("topic", T),
        ("partition", I4),
        ("offset", I8),
        ("error", T),
        ("payload", DataType::Binary),
        ("ingested_at", ts),
    ]);
    for t in tables.iter().filter(|t| t.schema().options.has_source()) {
        let topic = t
            .schema()
            .options
            .get("kafka_topic")
            .unwrap_or_default()
            .to_string();
        for letter in t.dead_letters()? {
            b.row(vec![
                V::S(t.name().to_string()),
                V::S(topic.clone()),
                V::I(i64::from(letter.partition)),
                V::I(letter.offset),
                V::S(letter.error),
                V::Bytes(letter.payload),
                V::I(letter.ingested_micros),
            ]);
        }
    }
    b.finish()
}

fn pg_collation(_: &[Arc<Table>], _: &str, _: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("oid", I8),
        ("collname", T),
        ("collnamespace", I8),
        ("collowner", I8),
        ("collprovider", T),
        ("collisdeterministic", B),
        ("collencoding", I4),
        ("collcollate", T),
        ("collctype", T),
    ]);
    b.row(vec![
        V::I(100),
        s("default"),
        V::I(PG_CATALOG_OID),
        V::I(ROLE_OID),
        s("d"),
        V::B(true),
        V::I(-1),
        V::N,
        V::N,
    ]);
    b.row(vec![
        V::I(950),
        s("C"),
        V::I(PG_CATALOG_OID),
        V::I(ROLE_OID),
        s("c"),
        V::B(true),
        V::I(-1),
        s("C"),
        s("C"),
    ]);
    b.finish()
}

fn pg_settings(session: Option<&Session>) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("name", T),
        ("setting", T),
        ("unit", T),
        ("category", T),
        ("short_desc", T),
        ("extra_desc", T),
        ("context", T),
        ("vartype", T),
        ("source", T),
        ("min_val", T),
        ("max_val", T),
        ("enumvals", T),
        ("boot_val", T),
        ("reset_val", T),
        ("sourcefile", T),
        ("sourceline", I4),
        ("pending_restart", B),
    ]);
    if let Some(session) = session {
        for (name, value) in session.all() {
            b.row(vec![
                s(name),
                s(value),
                V::N,
                s("Sluice"),
                V::N,
                V::N,
                s("user"),
                s("string"),
                s("default"),
                V::N,
                V::N,
                V::N,
                s(value),
                s(value),
                V::N,
                V::N,
                V::B(false),
            ]);
        }
    }
    b.finish()
}

fn info_schemata(_: &[Arc<Table>], user: &str, database: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("catalog_name", T),
        ("schema_name", T),
        ("schema_owner", T),
        ("default_character_set_catalog", T),
        ("default_character_set_schema", T),
        ("default_character_set_name", T),
        ("sql_path", T),
    ]);
    for name in ["pg_catalog", "public", "information_schema"] {
        b.row(vec![s(database), s(name), s(user), V::N, V::N, V::N, V::N]);
    }
    b.finish()
}

fn info_tables(tables: &[Arc<Table>], _: &str, database: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("table_catalog", T),
        ("table_schema", T),
        ("table_name", T),
        ("table_type", T),
        ("self_referencing_column_name", T),
        ("reference_generation", T),
        ("user_defined_type_catalog", T),
        ("user_defined_type_schema", T),
        ("user_defined_type_name", T),
        ("is_insertable_into", T),
        ("is_typed", T),
        ("commit_action", T),
    ]);
    for t in tables {
        b.row(vec![
            s(database),
            s("public"),
            V::S(t.name().to_string()),
            s("BASE TABLE"),
            V::N,
            V::N,
            V::N,
            V::N,
            V::N,
            s("YES"),
            s("NO"),
            V::N,
        ]);
    }
    b.finish()
}

fn info_columns(tables: &[Arc<Table>], _: &str, database: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("table_catalog", T),
        ("table_schema", T),
        ("table_name", T),
        ("column_name", T),
        ("ordinal_position", I4),
        ("column_default", T),
        ("is_nullable", T),
        ("data_type", T),
        ("character_maximum_length", I4),
        ("character_octet_length", I4),
        ("numeric_precision", I4),
        ("numeric_precision_radix", I4),
        ("numeric_scale", I4),
        ("datetime_precision", I4),
        ("interval_type", T),
        ("udt_catalog", T),
        ("udt_schema", T),
        ("udt_name", T),
        ("is_identity", T),
        ("is_generated", T),
        ("is_updatable", T),
    ]);
    for t in tables {
        for (i, c) in t.schema().columns.iter().enumerate() {
            let (precision, radix, scale) = match c.ty {
                ColumnType::Integer => (V::I(32), V::I(2), V::I(0)),
                ColumnType::BigInt => (V::I(64), V::I(2), V::I(0)),
                ColumnType::Double => (V::I(53), V::I(2), V::N),
                ColumnType::Numeric { precision, scale } => {
                    (V::I(precision.into()), V::I(10), V::I(scale.into()))
                }
                _ => (V::N, V::N, V::N),
            };
            let datetime = if c.ty.is_timestamp() { V::I(6) } else { V::N };
            let udt = TYPES
                .iter()
                .find(|x| x.0 == column_type_oid(c.ty))
                .map_or("text", |x| x.1);
            b.row(vec![
                s(database),
                s("public"),
                V::S(t.name().to_string()),
                V::S(c.name.clone()),
                V::I(i as i64 + 1),
                V::N,
                s(if c.nullable { "YES" } else { "NO" }),
                // information_schema names the type without its modifier.
                V::S(match c.ty {
                    ColumnType::Numeric { .. } => "numeric".into(),
                    t => t.sql_name(),
                }),
                V::N,
                if c.ty == ColumnType::Text {
                    V::I(1_073_741_824)
                } else {
                    V::N
                },
                precision,
                radix,
                scale,
                datetime,
                V::N,
                s(database),
                s("pg_catalog"),
                s(udt),
                s("NO"),
                s("NEVER"),
                s("YES"),
            ]);
        }
    }
    b.finish()
}

fn info_table_constraints(tables: &[Arc<Table>], _: &str, database: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("constraint_catalog", T),
        ("constraint_schema", T),
        ("constraint_name", T),
        ("table_catalog", T),
        ("table_schema", T),
        ("table_name", T),
        ("constraint_type", T),
        ("is_deferrable", T),
        ("initially_deferred", T),
        ("enforced", T),
        ("nulls_distinct", T),
    ]);
    for t in tables.iter().filter(|t| !t.schema().primary_key.is_empty()) {
        b.row(vec![
            s(database),
            s("public"),
            V::S(format!("{}_pkey", t.name())),
            s(database),
            s("public"),
            V::S(t.name().to_string()),
            s("PRIMARY KEY"),
            s("NO"),
            s("NO"),
            s("YES"),
            V::N,
        ]);
    }
    b.finish()
}

fn info_key_column_usage(tables: &[Arc<Table>], _: &str, database: &str) -> Result<RecordBatch> {
    let mut b = TableBuilder::new(&[
        ("constraint_catalog", T),
        ("constraint_schema", T),
        ("constraint_name", T),
        ("table_catalog", T),
        ("table_schema", T),
        ("table_name", T),
        ("column_name", T),
        ("ordinal_position", I4),
        ("position_in_unique_constraint", I4),
    ]);
    for t in tables {
        for (i, k) in t.schema().primary_key.iter().enumerate() {
            b.row(vec![
                s(database),
                s("public"),
                V::S(format!("{}_pkey", t.name())),
                s(database),
                s("public"),
                V::S(t.name().to_string()),
                V::S(k.clone()),
                V::I(i as i64 + 1),
                V::N,
            ]);
        }
    }
    b.finish()
}
