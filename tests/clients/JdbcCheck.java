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
        }
    }
}
