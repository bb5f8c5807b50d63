"""SQLAlchemy 2 reflection and psycopg 3 (binary results, server-side parameters)
against a running Sluice. Every step asserts on the rows it gets back."""
import datetime
import os
import sys

import psycopg
import sqlalchemy as sa

dsn = f"host=127.0.0.1 port={os.environ['PGPORT']} user=sluice dbname=sluice"

def step(name, fn):
    fn()
    print(f"ok python: {name}")

def sqlalchemy_reflection():
    engine = sa.create_engine(f"postgresql+psycopg://sluice@127.0.0.1:{os.environ['PGPORT']}/sluice")
    insp = sa.inspect(engine)
    tables = insp.get_table_names()
    assert "orders" in tables, tables
    cols = {c["name"]: str(c["type"]) for c in insp.get_columns("orders")}
    assert cols["amount"] == "DOUBLE PRECISION", cols
    assert cols["restaurant_id"] == "BIGINT", cols
    assert cols["ts"] == "TIMESTAMP", cols
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT item, count(*) AS n FROM orders WHERE restaurant_id = :r GROUP BY item ORDER BY item"),
            {"r": 7},
        ).all()
        assert [tuple(r) for r in rows] == [("pizza", 2), ("soup", 1)], rows

def psycopg_binary_server_side_params():
    with psycopg.connect(dsn) as conn:
        with conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT restaurant_id, sum(amount), max(ts) FROM orders WHERE restaurant_id = %s AND amount > %s GROUP BY restaurant_id",
                (7, 1.5),
            )
            rows = cur.fetchall()
            assert rows == [(7, 32.5, datetime.datetime(2024, 5, 1, 12, 10))], rows
            # Run the same statement again so psycopg prepares it on the server.
            for _ in range(6):
                cur.execute("SELECT count(*) FROM orders WHERE item = %s", ("pizza",), prepare=True)
                assert cur.fetchone() == (3,)
        cur = conn.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)",
                           (datetime.datetime(2024, 5, 2, 9, 0), "o-100", 8, "salad", 7.25))
        assert cur.rowcount == 1
        (n,) = conn.execute("SELECT count(*) FROM orders WHERE restaurant_id = 8").fetchone()
        assert n == 2, n
        try:
            conn.execute("SELECT * FROM no_such_table")
            raise AssertionError("expected an error")
        except psycopg.errors.UndefinedTable:
            pass

def psycopg_copy():
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE pycopy (ts TIMESTAMP, id BIGINT, amount DOUBLE PRECISION, note TEXT) "
                     "WITH (time_column = 'ts', retention = 'none')")
        rows = [(datetime.datetime(2024, 5, 1, 10, i), i, i * 1.5, None if i % 2 else f"n\t{i}") for i in range(50)]
        with conn.cursor() as cur:
            with cur.copy("COPY pycopy (ts, id, amount, note) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            assert cur.rowcount == 50, cur.rowcount
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT ts, id, amount, note FROM pycopy ORDER BY id) TO STDOUT") as copy:
                copy.set_types(["timestamp", "int8", "float8", "text"])
                back = list(copy.rows())
        assert back == rows, back[:3]
        # The binary format, both ways.
        with conn.cursor() as cur:
            with cur.copy("COPY pycopy (ts, id, amount, note) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["timestamp", "int8", "float8", "text"])
                for r in rows:
                    copy.write_row((r[0], r[1] + 100, r[2], r[3]))
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT ts, id, amount, note FROM pycopy WHERE id >= 100 ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["timestamp", "int8", "float8", "text"])
                binary_back = list(copy.rows())
        assert binary_back == [(r[0], r[1] + 100, r[2], r[3]) for r in rows], binary_back[:3]

step("SQLAlchemy inspect + text() parameters", sqlalchemy_reflection)
step("psycopg copy: write_row in, rows() out, text and binary formats", psycopg_copy)
step("psycopg binary cursor, server-side parameters, prepared statements, errors", psycopg_binary_server_side_params)
