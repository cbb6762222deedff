package meshgate.jdbc;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Calendar;
import java.util.List;
import java.util.Properties;
import java.util.TimeZone;

/**
 * Where the gateways under test listen and how to reach them, from the system properties
 * tests/python/test_jdbc.py passes in:
 *
 * <ul>
 *   <li>{@code meshgate.url}: the plain-TCP demo, {@code jdbc:arrow-flight-sql://host:port};
 *   <li>{@code meshgate.tls.url}, {@code meshgate.tls.ca}, {@code meshgate.tls.token}: a
 *       gateway serving TLS with a certificate signed by the CA in that PEM file, and a bearer
 *       token of {@code risk-officer} it issued; {@code meshgate.tls.truststore}: the CA in a
 *       JKS trust store (password {@code meshgate});
 *   <li>{@code meshgate.metrics}: the demo's {@code /metrics} URL;
 *   <li>{@code meshgate.expected}: what ADBC sees for every principal (see {@link Expected}).
 * </ul>
 */
final class MeshgateJdbc {
    private MeshgateJdbc() {}

    static String property(String name) {
        String value = System.getProperty(name, "");
        assertTrue(!value.isEmpty(), "system property " + name + " is not set: run these tests through tests/python/test_jdbc.py");
        return value;
    }

    /** A plain-TCP connection as {@code user} with the demo's password. */
    static Connection connect(String user) throws SQLException {
        return connect(user, new Properties());
    }

    /** {@link #connect(String)} with more driver properties. */
    static Connection connect(String user, Properties extra) throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", user + "-pw");
        // The driver encrypts by default (apache/arrow#35777); the demo serves plain TCP.
        props.setProperty("useEncryption", "false");
        props.putAll(extra);
        return DriverManager.getConnection(property("meshgate.url"), props);
    }

    /** Every row of {@code sql} on {@code conn}, each value rendered by {@link #render}. */
    static List<List<String>> rows(Connection conn, String sql) throws SQLException {
        try (Statement stmt = conn.createStatement()) {
            return rows(stmt.executeQuery(sql));
        }
    }

    static List<List<String>> rows(ResultSet rs) throws SQLException {
        List<List<String>> out = new ArrayList<>();
        int columns = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= columns; i++) {
                row.add(render(rs, i));
            }
            out.add(row);
        }
        rs.close();
        return out;
    }

    /** The single BIGINT of a one-row, one-column query. */
    static long single(Connection conn, String sql) throws SQLException {
        try (Statement stmt = conn.createStatement(); ResultSet rs = stmt.executeQuery(sql)) {
            assertTrue(rs.next(), sql);
            return rs.getLong(1);
        }
    }

    private static final Calendar UTC = Calendar.getInstance(TimeZone.getTimeZone("UTC"));

    /**
     * One value the way the ADBC side writes it (tests/python/test_jdbc.py {@code render}):
     * integers and decimals in plain notation, doubles as their exact decimal expansion,
     * dates as ISO dates, timestamps as microseconds since the epoch, NULL as {@code \N}.
     */
    static String render(ResultSet rs, int column) throws SQLException {
        ResultSetMetaData meta = rs.getMetaData();
        String out;
        switch (meta.getColumnType(column)) {
            case Types.BIGINT, Types.INTEGER, Types.SMALLINT, Types.TINYINT -> {
                long v = rs.getLong(column);
                out = rs.wasNull() ? null : Long.toString(v);
            }
            case Types.DECIMAL, Types.NUMERIC -> {
                BigDecimal v = rs.getBigDecimal(column);
                out = v == null ? null : v.toPlainString();
            }
            case Types.DOUBLE, Types.FLOAT, Types.REAL -> {
                double v = rs.getDouble(column);
                out = rs.wasNull() ? null : new BigDecimal(v).toPlainString();
            }
            case Types.DATE -> {
                java.sql.Date v = rs.getDate(column);
                out = v == null ? null : v.toString();
            }
            case Types.TIMESTAMP, Types.TIMESTAMP_WITH_TIMEZONE -> {
                Timestamp v = rs.getTimestamp(column, UTC);
                out = v == null ? null : Long.toString(Math.floorDiv(v.getTime(), 1000) * 1_000_000 + v.getNanos() / 1000);
            }
            default -> out = rs.getString(column);
        }
        return out == null ? "\\N" : out;
    }

    /** The messages of an exception and its causes, for checking what reaches the user. */
    static String messages(Throwable error) {
        StringBuilder out = new StringBuilder();
        for (Throwable e = error; e != null; e = e.getCause()) {
            out.append(e.getClass().getName()).append(": ").append(e.getMessage()).append('\n');
        }
        return out.toString();
    }

    static void assertContains(String haystack, String needle) {
        assertNotNull(haystack);
        assertTrue(haystack.contains(needle), () -> "expected `" + needle + "` in:\n" + haystack);
    }
}
