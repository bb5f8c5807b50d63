import java.math.BigDecimal;
import java.nio.file.*;
import java.sql.*;
import java.time.*;
import java.util.*;
import org.postgresql.util.PGInterval;

/**
 * The parameter matrix (tests/params/matrix.json) through pgjdbc: setShort/setInt/setLong,
 * setDouble, setBigDecimal, setString, setBoolean, setTimestamp (sent unspecified),
 * setObject (LocalDate, OffsetDateTime, PGInterval) and setArray. Each case runs against
 * Sluice (PGPORT) and PostgreSQL 15 (SLUICE_PG_URL), with text transfer and with binary
 * transfer forced, and rows or SQLSTATE must be equal.
 */
public class ParamMatrix {
    public static void main(String[] args) throws Exception {
        String oracle = System.getenv("SLUICE_PG_URL");
        if (oracle == null) {
            System.out.println("FAIL java: param matrix needs SLUICE_PG_URL (a PostgreSQL 15 to compare with)");
            System.exit(1);
        }
        Map<String, String> o = new HashMap<>();
        for (String part : oracle.trim().split("\\s+")) {
            String[] kv = part.split("=", 2);
            o.put(kv[0], kv[1]);
        }
        String dir = args.length > 0 ? args[0] : ".";
        @SuppressWarnings("unchecked")
        Map<String, Object> matrix = (Map<String, Object>) new Json(Files.readString(Path.of(dir, "..", "params", "matrix.json"))).value();
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> cases = (List<Map<String, Object>>) matrix.get("cases");
        List<String> failures = new ArrayList<>();
        int cells = 0;
        for (String mode : new String[] {"prepareThreshold=0", "prepareThreshold=-1"}) {
            String pgUrl = "jdbc:postgresql://" + o.get("host") + ":" + o.get("port") + "/" + o.getOrDefault("dbname", "postgres")
                + "?user=" + o.get("user") + "&" + mode;
            String slUrl = "jdbc:postgresql://127.0.0.1:" + System.getenv("PGPORT") + "/sluice?user=sluice&" + mode;
            try (Connection pg = DriverManager.getConnection(pgUrl); Connection sl = DriverManager.getConnection(slUrl)) {
                String schema = "param_matrix_java";
                exec(pg, "SET TimeZone = 'UTC'; DROP SCHEMA IF EXISTS " + schema + " CASCADE; CREATE SCHEMA " + schema
                    + "; SET search_path = " + schema);
                setup(pg, matrix, (String) matrix.get("create_postgres"));
                setup(sl, matrix, (String) matrix.get("create_sluice"));
                for (Map<String, Object> c : cases) {
                    cells++;
                    String sql = (String) c.get("sql");
                    @SuppressWarnings("unchecked")
                    List<List<Object>> params = (List<List<Object>>) c.get("params");
                    String want = run(pg, sql, params);
                    String got = run(sl, sql, params);
                    if (want.equals(got) && c.containsKey("check")) {
                        want = run(pg, (String) c.get("check"), List.of());
                        got = run(sl, (String) c.get("check"), List.of());
                    }
                    if (!want.equals(got)) {
                        failures.add("[" + mode + "] " + sql + " " + params + "\n  postgres: " + want + "\n  sluice:   " + got);
                    }
                }
                exec(pg, "DROP SCHEMA " + schema + " CASCADE");
            }
        }
        failures.forEach(System.out::println);
        if (!failures.isEmpty()) {
            System.out.println("FAIL java: param matrix, " + failures.size() + " of " + cells + " cells differ from PostgreSQL");
            System.exit(1);
        }
        System.out.println("ok java: param matrix, " + cells + " cells (pgjdbc text and binary transfer) equal to PostgreSQL");
    }

    static void exec(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            for (String part : sql.split(";")) {
                if (!part.isBlank()) s.execute(part);
            }
        }
    }

    static void setup(Connection c, Map<String, Object> matrix, String create) throws SQLException {
        exec(c, matrix.get("drop") + ";" + create + ";" + matrix.get("rows"));
    }

    static String run(Connection c, String sql, List<List<Object>> params) {
        try (PreparedStatement ps = c.prepareStatement(sql.replaceAll("\\$\\d+", "?"))) {
            for (int i = 0; i < params.size(); i++) bind(c, ps, i + 1, (String) params.get(i).get(0), params.get(i).get(1));
            if (!ps.execute()) return "ok " + ps.getUpdateCount();
            StringBuilder out = new StringBuilder("rows");
            try (ResultSet rs = ps.getResultSet()) {
                ResultSetMetaData md = rs.getMetaData();
                while (rs.next()) {
                    out.append(" [");
                    for (int k = 1; k <= md.getColumnCount(); k++) out.append(canon(rs, md, k)).append(';');
                    out.append(']');
                }
            }
            return out.toString();
        } catch (SQLException e) {
            return "error " + e.getSQLState() + (System.getenv("MATRIX_DEBUG") != null ? " " + e.getMessage() : "");
        }
    }

    /**
     * Numbers by value (Sluice computes NUMERIC as double precision), the rest as text tagged by
     * type name.
     */
    static String canon(ResultSet rs, ResultSetMetaData md, int k) throws SQLException {
        String text = rs.getString(k);
        if (text == null) return "NULL";
        switch (md.getColumnType(k)) {
            case Types.SMALLINT: case Types.INTEGER: case Types.BIGINT: case Types.REAL: case Types.DOUBLE:
            case Types.FLOAT: case Types.NUMERIC: case Types.DECIMAL:
                return "num:" + Double.parseDouble(text);
            default:
                // Sluice has one string type: a varchar parameter comes back as text.
                String type = md.getColumnTypeName(k);
                return (type.equals("varchar") || type.equals("bpchar") ? "text" : type) + ":" + text;
        }
    }

    static void bind(Connection c, PreparedStatement ps, int i, String type, Object v) throws SQLException {
        switch (type) {
            case "int2": ps.setShort(i, ((Number) v).shortValue()); break;
            case "int4": ps.setInt(i, ((Number) v).intValue()); break;
            case "int8": ps.setLong(i, ((Number) v).longValue()); break;
            case "float8": ps.setDouble(i, ((Number) v).doubleValue()); break;
            case "numeric": ps.setBigDecimal(i, new BigDecimal((String) v)); break;
            case "text": ps.setString(i, (String) v); break;
            case "bool": ps.setBoolean(i, (Boolean) v); break;
            case "date": ps.setObject(i, LocalDate.parse((String) v)); break;
            case "timestamp": ps.setTimestamp(i, java.sql.Timestamp.valueOf((String) v)); break;
            case "timestamptz":
                ps.setObject(i, OffsetDateTime.parse(((String) v).replace(' ', 'T').replaceAll("\\+00$", "Z")));
                break;
            case "interval": ps.setObject(i, new PGInterval((String) v)); break;
            case "int8[]": ps.setArray(i, c.createArrayOf("int8", ((List<?>) v).stream().map(x -> ((Number) x).longValue()).toArray())); break;
            case "int4[]": ps.setArray(i, c.createArrayOf("int4", ((List<?>) v).stream().map(x -> ((Number) x).intValue()).toArray())); break;
            case "text[]": ps.setArray(i, c.createArrayOf("text", ((List<?>) v).toArray())); break;
            default: throw new IllegalArgumentException("no binding for type " + type);
        }
    }

    /** Just enough JSON for the matrix file: objects, arrays, strings, numbers, booleans, null. */
    static final class Json {
        private final String s;
        private int at;

        Json(String s) { this.s = s; }

        Object value() {
            skip();
            char ch = s.charAt(at);
            if (ch == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                at++;
                skip();
                if (s.charAt(at) == '}') { at++; return m; }
                while (true) {
                    skip();
                    String k = (String) value();
                    skip();
                    at++; // ':'
                    m.put(k, value());
                    skip();
                    if (s.charAt(at++) == '}') return m;
                }
            }
            if (ch == '[') {
                List<Object> l = new ArrayList<>();
                at++;
                skip();
                if (s.charAt(at) == ']') { at++; return l; }
                while (true) {
                    l.add(value());
                    skip();
                    if (s.charAt(at++) == ']') return l;
                }
            }
            if (ch == '"') {
                StringBuilder b = new StringBuilder();
                at++;
                while (s.charAt(at) != '"') {
                    char x = s.charAt(at++);
                    if (x == '\\') {
                        char e = s.charAt(at++);
                        switch (e) {
                            case 'n': b.append('\n'); break;
                            case 't': b.append('\t'); break;
                            case 'u': b.append((char) Integer.parseInt(s.substring(at, at + 4), 16)); at += 4; break;
                            default: b.append(e);
                        }
                    } else {
                        b.append(x);
                    }
                }
                at++;
                return b.toString();
            }
            if (s.startsWith("true", at)) { at += 4; return Boolean.TRUE; }
            if (s.startsWith("false", at)) { at += 5; return Boolean.FALSE; }
            if (s.startsWith("null", at)) { at += 4; return null; }
            int start = at;
            while (at < s.length() && "+-0123456789.eE".indexOf(s.charAt(at)) >= 0) at++;
            String num = s.substring(start, at);
            return num.matches("-?\\d+") ? (Object) Long.parseLong(num) : (Object) Double.parseDouble(num);
        }

        private void skip() {
            while (at < s.length() && Character.isWhitespace(s.charAt(at))) at++;
        }
    }
}
