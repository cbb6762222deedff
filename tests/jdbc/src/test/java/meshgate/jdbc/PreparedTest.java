package meshgate.jdbc;

import static meshgate.jdbc.MeshgateJdbc.connect;
import static meshgate.jdbc.MeshgateJdbc.single;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.sql.Types;

import org.junit.jupiter.api.Test;

/**
 * Prepared statements with a parameter of every type the mesh uses; each answer must equal
 * the same statement with the value written as a literal.
 */
class PreparedTest {
    private interface Binder {
        void bind(PreparedStatement stmt) throws SQLException;
    }

    private static long count(Connection conn, String sql, Binder binder) throws SQLException {
        try (PreparedStatement stmt = conn.prepareStatement(sql)) {
            binder.bind(stmt);
            try (ResultSet rs = stmt.executeQuery()) {
                assertTrue(rs.next());
                return rs.getLong(1);
            }
        }
    }

    @Test
    void parameters_of_every_type_bind_like_literals() throws SQLException {
        try (Connection conn = connect("risk-officer")) {
            // BIGINT
            assertEquals(1, count(conn, "SELECT count(*) FROM reference.counterparties WHERE counterparty_id = ?", s -> s.setLong(1, 4242)));
            // VARCHAR
            long cib = single(conn, "SELECT count(*) FROM reference.counterparties WHERE lob = 'CIB'");
            assertEquals(15000, cib);
            assertEquals(cib, count(conn, "SELECT count(*) FROM reference.counterparties WHERE lob = ?", s -> s.setString(1, "CIB")));
            // NULL (typed as the VARCHAR it stands for)
            assertEquals(cib, count(conn, "SELECT count(*) FROM reference.counterparties WHERE lob = coalesce(?, 'CIB')", s -> s.setNull(1, Types.VARCHAR)));
            // DECIMAL
            long large = single(conn, "SELECT count(*) FROM payments.transactions WHERE amount > 2500.50");
            assertTrue(large > 0 && large < 200000, "" + large);
            assertEquals(large, count(conn, "SELECT count(*) FROM payments.transactions WHERE amount > ?", s -> s.setBigDecimal(1, new BigDecimal("2500.50"))));
            // DATE
            long recent = single(conn, "SELECT count(*) FROM markets.trades WHERE trade_date >= DATE '2026-03-01'");
            assertTrue(recent > 0 && recent < 50000, "" + recent);
            assertEquals(recent, count(conn, "SELECT count(*) FROM markets.trades WHERE trade_date >= ?", s -> s.setDate(1, java.sql.Date.valueOf("2026-03-01"))));
            // TIMESTAMP WITH TIME ZONE (booked_at), from an instant in UTC and the same instant elsewhere.
            long march = single(conn, "SELECT count(*) FROM payments.transactions WHERE booked_at < TIMESTAMP '2026-03-01T00:00:00Z'");
            assertTrue(march > 0 && march < 200000, "" + march);
            Timestamp instant = Timestamp.from(java.time.Instant.parse("2026-03-01T00:00:00Z"));
            assertEquals(march, count(conn, "SELECT count(*) FROM payments.transactions WHERE booked_at < ?", s -> s.setTimestamp(1, instant)));
            // TIMESTAMP without a time zone: a wall-clock value compared as written.
            long wall = single(conn, "SELECT count(*) FROM payments.transactions WHERE CAST(booked_at AS TIMESTAMP) < TIMESTAMP '2026-03-01 00:00:00'");
            assertEquals(march, wall);
            assertEquals(wall, count(conn, "SELECT count(*) FROM payments.transactions WHERE CAST(booked_at AS TIMESTAMP) < ?", s -> s.setTimestamp(1, Timestamp.valueOf("2026-03-01 00:00:00"))));
        }
    }

    @Test
    void parameter_and_result_metadata_before_execution() throws SQLException {
        try (Connection conn = connect("risk-officer");
                PreparedStatement stmt = conn.prepareStatement("SELECT txn_id, amount FROM payments.transactions WHERE lob = ? AND amount > ?")) {
            ParameterMetaData params = stmt.getParameterMetaData();
            assertEquals(2, params.getParameterCount());
            assertEquals(Types.VARCHAR, params.getParameterType(1));
            assertEquals(Types.DECIMAL, params.getParameterType(2));
            ResultSetMetaData result = stmt.getMetaData();
            assertEquals(2, result.getColumnCount());
            assertEquals("amount", result.getColumnName(2));
            // Bound and run twice with different values: each run uses its own.
            stmt.setString(1, "CCB");
            // The driver needs a BigDecimal of the column's scale, DECIMAL(18,2) (README).
            stmt.setBigDecimal(2, BigDecimal.ZERO.setScale(2));
            long ccb = MeshgateJdbc.rows(stmt.executeQuery()).size();
            stmt.setString(1, "AWM");
            long awm = MeshgateJdbc.rows(stmt.executeQuery()).size();
            assertEquals(single(conn, "SELECT count(*) FROM payments.transactions WHERE lob = 'CCB' AND amount > 0"), ccb);
            assertEquals(single(conn, "SELECT count(*) FROM payments.transactions WHERE lob = 'AWM' AND amount > 0"), awm);
        }
    }

    @Test
    void a_parameter_compares_with_the_protected_value_never_the_clear_one() throws SQLException {
        try (Connection conn = connect("cib-reporting")) {
            String token = MeshgateJdbc.rows(conn, "SELECT tax_id FROM reference.counterparties ORDER BY counterparty_id LIMIT 1").get(0).get(0);
            assertTrue(token.startsWith("tok_"), token);
            assertEquals(1, count(conn, "SELECT count(*) FROM reference.counterparties WHERE tax_id = ?", s -> s.setString(1, token)));
            // The LOB row filter holds whatever the parameter says.
            assertEquals(0, count(conn, "SELECT count(*) FROM reference.counterparties WHERE lob = ?", s -> s.setString(1, "CCB")));
        }
        try (Connection owner = connect("ref-owner"); Connection reader = connect("cib-reporting")) {
            String clear = MeshgateJdbc.rows(owner, "SELECT tax_id FROM reference.counterparties WHERE lob = 'CIB' ORDER BY counterparty_id LIMIT 1").get(0).get(0);
            assertTrue(!clear.startsWith("tok_"), clear);
            assertEquals(0, count(reader, "SELECT count(*) FROM reference.counterparties WHERE tax_id = ?", s -> s.setString(1, clear)));
        }
    }
}
