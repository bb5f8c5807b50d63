"""The parameter matrix (tests/params/matrix.json) through psycopg 3, with
server-side binding in text (%t) and in binary (%b, binary results): every case
runs against Sluice (PGPORT) and PostgreSQL 15 (SLUICE_PG_URL), and each answer,
rows or SQLSTATE, must be equal. psycopg declares a type for each Python value
(Int2/Int4/Int8 by wrapper, float8, numeric, date, timestamp or timestamptz by
tzinfo, interval, arrays), except str in text mode, which it sends unspecified."""
import datetime
import decimal
import json
import os
import pathlib
import re
import sys

import psycopg
from psycopg.types.numeric import Int2, Int4, Int8

here = pathlib.Path(__file__).resolve().parent
matrix = json.loads((here.parent / "params" / "matrix.json").read_text())


def interval(text):
    h, m, s = text.split(":")
    return datetime.timedelta(hours=int(h), minutes=int(m), seconds=float(s))


def timestamptz(text):
    return datetime.datetime.fromisoformat(re.sub(r"\+00$", "+00:00", text))


NATIVE = {
    "int2": Int2,
    "int4": Int4,
    "int8": Int8,
    "float8": float,
    "numeric": decimal.Decimal,
    "text": str,
    "bool": bool,
    "date": datetime.date.fromisoformat,
    "timestamp": datetime.datetime.fromisoformat,
    "timestamptz": timestamptz,
    "interval": interval,
    "int8[]": lambda v: [Int8(x) for x in v],
    "int4[]": lambda v: [Int4(x) for x in v],
    "text[]": list,
}


def canon(v):
    """One spelling per value, so numeric 2.50 and float8 2.5 compare equal
    (Sluice computes NUMERIC as double precision) but 2.5 and '2.5' do not."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, (int, float, decimal.Decimal)):
        return f"num:{float(v)!r}"
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc)
        return f"ts:{v.isoformat()}"
    if isinstance(v, datetime.date):
        return f"date:{v.isoformat()}"
    if isinstance(v, datetime.timedelta):
        return f"interval:{v.days}d{v.seconds}s{v.microseconds}us"
    if isinstance(v, list):
        return "[" + ",".join(canon(x) for x in v) + "]"
    return f"str:{v}"


def run(conn, sql, params, binary):
    mark = "%b" if binary else "%t"
    text = re.sub(r"\$\d+", mark, sql.replace("%", "%%"))
    values = [NATIVE[t](v) for t, v in params]
    try:
        with conn.cursor(binary=binary) as cur:
            cur.execute(text, values)
            if cur.description is None:
                return ("ok", cur.rowcount)
            return ("rows", [[canon(x) for x in row] for row in cur.fetchall()])
    except psycopg.Error as e:
        return ("error", e.sqlstate)
    except (ValueError, TypeError) as e:
        # A value the server described as one type and sent as another.
        return ("undecodable", type(e).__name__)


def fetch(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return [[canon(x) for x in row] for row in cur.fetchall()]


def setup(conn, create):
    for sql in (matrix["drop"] + ";" + create + ";" + matrix["rows"]).split(";"):
        if sql.strip():
            conn.execute(sql)


def main():
    oracle_url = os.environ.get("SLUICE_PG_URL")
    if not oracle_url:
        print("FAIL python: param matrix needs SLUICE_PG_URL (a PostgreSQL 15 to compare with)")
        sys.exit(1)
    # PGDATABASE and PGUSER name Sluice's; the oracle's are its own.
    if "dbname=" not in oracle_url:
        oracle_url += " dbname=postgres"
    sluice_url = f"host=127.0.0.1 port={os.environ['PGPORT']} user=sluice dbname=sluice"
    failures, cells = [], 0
    for binary in (False, True):
        mode = "binary" if binary else "text"
        with psycopg.connect(oracle_url, autocommit=True) as pg, psycopg.connect(sluice_url, autocommit=True) as sl:
            pg.execute("SET TimeZone = 'UTC'")
            schema = f"param_matrix_py_{mode}"
            pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            pg.execute(f"CREATE SCHEMA {schema}")
            pg.execute(f"SET search_path = {schema}")
            setup(pg, matrix["create_postgres"])
            setup(sl, matrix["create_sluice"])
            for case in matrix["cases"]:
                cells += 1
                want = run(pg, case["sql"], case["params"], binary)
                got = run(sl, case["sql"], case["params"], binary)
                if want == got and "check" in case:
                    want, got = fetch(pg, case["check"]), fetch(sl, case["check"])
                if want != got:
                    failures.append(f"[{mode}] {case['sql']} {case['params']}\n  postgres: {want}\n  sluice:   {got}")
            pg.execute(f"DROP SCHEMA {schema} CASCADE")
    for f in failures:
        print(f)
    if failures:
        print(f"FAIL python: param matrix, {len(failures)} of {cells} cells differ from PostgreSQL")
        sys.exit(1)
    print(f"ok python: param matrix, {cells} cells (psycopg text and binary) equal to PostgreSQL")


main()
