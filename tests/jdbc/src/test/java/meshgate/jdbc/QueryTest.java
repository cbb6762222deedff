package meshgate.jdbc;

import static meshgate.jdbc.MeshgateJdbc.assertContains;
import static meshgate.jdbc.MeshgateJdbc.connect;
import static meshgate.jdbc.MeshgateJdbc.messages;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Test;

/** Statements, result metadata, large results, cancellation, time limits and refusals. */
class QueryTest {
    /** Runs long enough to be stopped: every pair of same-LOB payments (billions of rows). */
    static final String ENDLESS = "SELECT count(*) FROM payments.transactions a JOIN payments.transactions b ON a.lob = b.lob";

    @Test
    void result_set_metadata_names_types_and_nullability() throws SQLException {
        try (Connection conn = connect("risk-officer"); Statement stmt = conn.createStatement();
                ResultSet rs = stmt.executeQuery("SELECT txn_id, amount, booked_at, card_number, lob AS line_of_business, count(*) OVER () AS total "
                        + "FROM payments.transactions ORDER BY txn_id LIMIT 3")) {
            ResultSetMetaData meta = rs.getMetaData();
            assertEquals(6, meta.getColumnCount());
            assertEquals("txn_id", meta.getColumnName(1));
            // A product column's label is its name (the driver would show remarks instead).
            assertEquals("txn_id", meta.getColumnLabel(1));
            assertEquals("amount", meta.getColumnLabel(2));
            assertEquals("line_of_business", meta.getColumnLabel(5));
            assertEquals("total", meta.getColumnLabel(6));
            assertEquals(Types.BIGINT, meta.getColumnType(1));
            assertEquals(Types.DECIMAL, meta.getColumnType(2));
            assertEquals(18, meta.getPrecision(2));
            assertEquals(2, meta.getScale(2));
            assertEquals(Types.TIMESTAMP_WITH_TIMEZONE, meta.getColumnType(3));
            assertEquals(Types.VARCHAR, meta.getColumnType(4));
            // (The driver reports every result column as columnNoNulls; getColumns is exact.)
            assertEquals(ResultSetMetaData.columnNoNulls, meta.isNullable(1));
            // Where each column comes from, as the gateway's column metadata says.
            assertEquals("payments", meta.getSchemaName(1));
            assertEquals("transactions", meta.getTableName(1));
            assertTrue(rs.next());
            assertEquals(1, rs.getLong(1));
            String card = rs.getString(4);
            assertTrue(card.matches("\\*{12}[0-9]{4}"), card);
            assertEquals(200000, rs.getLong(6));
        }
    }

    @Test
    void a_large_result_arrives_whole_and_protected() throws SQLException {
        try (Connection conn = connect("risk-officer"); Statement stmt = conn.createStatement();
                ResultSet rs = stmt.executeQuery("SELECT txn_id, card_number FROM payments.transactions")) {
            long rows = 0;
            long sum = 0;
            while (rs.next()) {
                rows++;
                sum += rs.getLong(1);
                String card = rs.getString(2);
                if (!card.startsWith("************") || card.length() != 16) {
                    throw new AssertionError("an unmasked card number reached the driver: " + card);
                }
            }
            assertEquals(200000, rows);
            assertEquals(200000L * 200001L / 2, sum);
        }
    }

    /** meshgate_queries_running from the demo's /metrics. */
    static long running() throws Exception {
        String url = MeshgateJdbc.property("meshgate.metrics");
        HttpResponse<String> response = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString());
        Matcher m = Pattern.compile("(?m)^meshgate_queries_running (\\d+)").matcher(response.body());
        assertTrue(m.find(), response.body());
        return Long.parseLong(m.group(1));
    }

    /** Waits until the gateway runs no query (a stopped query gives its slot back). */
    static void awaitIdle() throws Exception {
        Instant until = Instant.now().plusSeconds(20);
        while (running() != 0) {
            assertTrue(Instant.now().isBefore(until), "the gateway still runs the stopped query");
            Thread.sleep(100);
        }
    }

    @Test
    void cancel_stops_the_query_and_the_connection_stays_usable() throws Exception {
        try (Connection conn = connect("risk-officer"); Statement stmt = conn.createStatement()) {
            CompletableFuture<Object> running = CompletableFuture.supplyAsync(() -> {
                try (ResultSet rs = stmt.executeQuery(ENDLESS)) {
                    return rs.next();
                } catch (SQLException e) {
                    return e;
                }
            });
            Instant until = Instant.now().plusSeconds(30);
            while (running() == 0) {
                assertTrue(Instant.now().isBefore(until), "the query never started");
                Thread.sleep(50);
            }
            stmt.cancel();
            Object outcome = running.get(30, TimeUnit.SECONDS);
            assertTrue(outcome instanceof SQLException, "cancel did not stop the query: " + outcome);
            awaitIdle();
            assertEquals(50000, MeshgateJdbc.single(conn, "SELECT count(*) FROM markets.trades"));
        }
    }

    @Test
    void a_query_timeout_stops_the_query() throws Exception {
        try (Connection conn = connect("risk-officer"); Statement stmt = conn.createStatement()) {
            stmt.setQueryTimeout(2);
            Instant started = Instant.now();
            SQLException error = assertThrows(SQLException.class, () -> {
                try (ResultSet rs = stmt.executeQuery(ENDLESS)) {
                    rs.next();
                }
            });
            assertTrue(Duration.between(started, Instant.now()).toSeconds() < 30, messages(error));
            assertContains(messages(error), "java.sql.SQLTimeoutException: Query timed out");
            // The driver leaves the timed-out stream open until its statement is closed
            // (README); closed, the gateway stops the query.
            stmt.close();
            awaitIdle();
            assertEquals(50000, MeshgateJdbc.single(conn, "SELECT count(*) FROM markets.trades"));
        }
    }

    @Test
    void a_denied_product_says_why_and_how_to_get_access() throws SQLException {
        try (Connection conn = connect("cib-reporting"); Statement stmt = conn.createStatement()) {
            SQLException error = assertThrows(SQLException.class, () -> stmt.executeQuery("SELECT * FROM payments.transactions").next());
            String text = messages(error);
            assertContains(text, "payments.transactions");
            assertContains(text, "request");
            // The refusal did not break the connection.
            assertEquals(15000, MeshgateJdbc.single(conn, "SELECT count(*) FROM reference.counterparties"));
        }
        try (Connection conn = connect("cib-reporting"); Statement stmt = conn.createStatement()) {
            SQLException error = assertThrows(SQLException.class, () -> stmt.executeQuery("SELECT internal_rating FROM reference.counterparties").next());
            assertContains(messages(error), "internal_rating");
        }
        try (Connection conn = connect("risk-officer"); Statement stmt = conn.createStatement()) {
            SQLException error = assertThrows(SQLException.class, () -> stmt.executeQuery("DELETE FROM payments.transactions"));
            assertContains(messages(error), "read-only");
        }
    }

    @Test
    void product_status_is_a_query_away() throws SQLException {
        // JDBC does not show a result's schema metadata (where deprecation warnings travel);
        // the README points JDBC users here instead.
        try (Connection conn = connect("intern")) {
            List<List<String>> rows = MeshgateJdbc.rows(conn,
                    "SELECT product_id, status, sunset, replaced_by FROM mesh_catalog.products ORDER BY product_id");
            assertEquals(List.of("markets.trades", "active", "\\N", "\\N"), rows.get(0));
            assertEquals(3, rows.size());
        }
    }

    @Test
    void a_wrong_password_is_refused_with_a_clear_error() {
        java.util.Properties wrong = new java.util.Properties();
        wrong.setProperty("password", "guess");
        SQLException error = assertThrows(SQLException.class, () -> connect("risk-officer", wrong).createStatement().executeQuery("SELECT 1"));
        assertFalse(messages(error).contains("guess"), messages(error));
        assertContains(messages(error).toLowerCase(), "unauthenticated");
    }
}
