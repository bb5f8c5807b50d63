import java.sql.*;
import java.util.*;

/** pgjdbc (Metabase, DBeaver) against a running Sluice: metadata and a prepared statement. */
public class JdbcCheck {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("PGPORT") + "/sluice?user=sluice";
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData md = c.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check(tables.contains("orders"), "getTables: " + tables);
            Map<String, String> cols = new LinkedHashMap<>();
            try (ResultSet rs = md.getColumns(null, "public", "orders", "%")) {
                while (rs.next()) cols.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
            }
            check("float8".equals(cols.get("amount")) && "int8".equals(cols.get("restaurant_id")), "getColumns: " + cols);
            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            check(schemas.contains("public"), "getSchemas: " + schemas);
            System.out.println("ok java: getTables, getColumns, getSchemas");

            // pgjdbc switches to a server-prepared, binary statement after five runs.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*), sum(amount) FROM orders WHERE restaurant_id = ? AND ts >= ?")) {
                for (int i = 0; i < 6; i++) {
                    ps.setLong(1, 7);
                    ps.setTimestamp(2, Timestamp.valueOf("2024-05-01 00:00:00"));
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "a row");
                        check(rs.getLong(1) == 3 && rs.getDouble(2) == 32.5, "run " + i + ": " + rs.getLong(1) + " " + rs.getDouble(2));
                    }
                }
            }
            System.out.println("ok java: PreparedStatement six times");

            // CopyManager: CSV in (a bad row applies nothing), text out.
            org.postgresql.copy.CopyManager copy = c.unwrap(org.postgresql.PGConnection.class).getCopyAPI();
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE jcopy (ts TIMESTAMP, id BIGINT, note TEXT) WITH (time_column = 'ts', retention = 'none')");
            }
            String csv = "ts,id,note\n2024-05-01 10:00:00,1,\"a, b\"\n2024-05-01 11:00:00,2,\n";
            long in = copy.copyIn("COPY jcopy FROM STDIN WITH (FORMAT csv, HEADER true)", new java.io.StringReader(csv));
            check(in == 2, "copyIn rows: " + in);
            boolean refused = false;
            try {
                copy.copyIn("COPY jcopy FROM STDIN (FORMAT csv)", new java.io.StringReader("2024-05-01 12:00:00,3,x\nnot a time,4,y\n"));
            } catch (SQLException e) {
                refused = "22007".equals(e.getSQLState()) && e.getMessage().contains("line 2");
            }
            check(refused, "a bad CSV row is refused naming its line");
            java.io.StringWriter out = new java.io.StringWriter();
            long n = copy.copyOut("COPY (SELECT id, note FROM jcopy ORDER BY id) TO STDOUT", out);
            check(n == 2 && out.toString().equals("1\ta, b\n2\t\\N\n"), "copyOut: " + n + " " + out);
            System.out.println("ok java: CopyManager in (CSV) and out (text)");
        }
    }
}
