package meshgate.jdbc;

import static meshgate.jdbc.MeshgateJdbc.connect;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import org.junit.jupiter.api.Test;

/** DatabaseMetaData as BI tools call it, answered from the caller's own view of the mesh. */
class MetadataTest {
    private static List<String> strings(ResultSet rs, String column) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) {
            out.add(rs.getString(column));
        }
        rs.close();
        return out;
    }

    @Test
    void catalogs_schemas_and_table_types() throws SQLException {
        try (Connection conn = connect("risk-officer")) {
            DatabaseMetaData meta = conn.getMetaData();
            assertEquals(List.of("mesh"), strings(meta.getCatalogs(), "TABLE_CAT"));
            assertEquals(Set.of("mesh_catalog", "markets", "payments", "reference"), new TreeSet<>(strings(meta.getSchemas(), "TABLE_SCHEM")));
            assertEquals(List.of("payments"), strings(meta.getSchemas("mesh", "pay%"), "TABLE_SCHEM"));
            assertEquals(List.of(), strings(meta.getSchemas("elsewhere", null), "TABLE_SCHEM"));
            assertEquals(Set.of("SYSTEM TABLE", "TABLE", "VIEW"), new TreeSet<>(strings(meta.getTableTypes(), "TABLE_TYPE")));
        }
    }

    @Test
    void the_catalog_property_selects_the_only_catalog() throws SQLException {
        // The driver sends `catalog` as a session option on connect; a refusal would fail
        // the connection (apache/doris#67966).
        java.util.Properties props = new java.util.Properties();
        props.setProperty("catalog", "mesh");
        Connection conn = connect("risk-officer", props);
        assertEquals(50000, MeshgateJdbc.single(conn, "SELECT count(*) FROM markets.trades"));
        // Driver 18.3 then closes the session twice, the second time on its closed channel,
        // and throws from close() (README); later drivers close once.
        try {
            conn.close();
        } catch (SQLException e) {
            MeshgateJdbc.assertContains(MeshgateJdbc.messages(e), "Channel shutdown invoked");
        }
    }

    @Test
    void tables_by_pattern_and_type() throws SQLException {
        try (Connection conn = connect("risk-officer")) {
            DatabaseMetaData meta = conn.getMetaData();
            assertEquals(List.of("counterparties"), strings(meta.getTables(null, "reference", "%", new String[] {"TABLE"}), "TABLE_NAME"));
            assertEquals(List.of("transactions"), strings(meta.getTables("mesh", "pay%", "trans_ctions", null), "TABLE_NAME"));
            assertEquals(List.of(), strings(meta.getTables(null, "reference", "%", new String[] {"VIEW"}), "TABLE_NAME"));
            List<String> system = strings(meta.getTables(null, null, "%", new String[] {"SYSTEM TABLE"}), "TABLE_SCHEM");
            assertFalse(system.isEmpty());
            assertTrue(system.stream().allMatch("mesh_catalog"::equals), system.toString());
            try (ResultSet rs = meta.getTables(null, "markets", "trades", null)) {
                assertTrue(rs.next());
                assertEquals("mesh", rs.getString("TABLE_CAT"));
                assertEquals("markets", rs.getString("TABLE_SCHEM"));
                assertEquals("TABLE", rs.getString("TABLE_TYPE"));
                assertFalse(rs.next());
            }
        }
    }

    /** One column of getColumns: its JDBC type, type name, size, scale and nullability. */
    private static Map<String, String> columnTypes(DatabaseMetaData meta, String schema, String table) throws SQLException {
        Map<String, String> out = new LinkedHashMap<>();
        try (ResultSet rs = meta.getColumns(null, schema, table, "%")) {
            while (rs.next()) {
                int scale = rs.getInt("DECIMAL_DIGITS");
                String scaleText = rs.wasNull() ? "" : "," + scale;
                out.put(rs.getString("COLUMN_NAME"), rs.getInt("DATA_TYPE") + " " + rs.getString("TYPE_NAME") + "(" + rs.getInt("COLUMN_SIZE") + scaleText + ") " + rs.getString("IS_NULLABLE"));
            }
        }
        return out;
    }

    @Test
    void columns_carry_every_jdbc_type_the_mesh_serves() throws SQLException {
        try (Connection conn = connect("risk-officer")) {
            DatabaseMetaData meta = conn.getMetaData();
            Map<String, String> payments = columnTypes(meta, "payments", "transactions");
            assertEquals(List.of("txn_id", "counterparty_id", "lob", "amount", "currency", "card_number", "booked_at"), new ArrayList<>(payments.keySet()));
            // Every column of the reference contracts is `required`: NOT NULL.
            assertEquals(Types.BIGINT + " BIGINT(19,0) NO", payments.get("txn_id"));
            assertEquals(Types.DECIMAL + " DECIMAL(18,2) NO", payments.get("amount"));
            assertEquals(Types.VARCHAR + " VARCHAR(65536) NO", payments.get("card_number"));
            assertEquals(Types.TIMESTAMP_WITH_TIMEZONE + " TIMESTAMP WITH TIME ZONE(26,6) NO", payments.get("booked_at"));
            Map<String, String> trades = columnTypes(meta, "markets", "trades");
            assertEquals(Types.DOUBLE + " DOUBLE(53) NO", trades.get("notional"));
            assertEquals(Types.DATE + " DATE(10,0) NO", trades.get("trade_date"));
            // The contract's column descriptions are the columns' remarks.
            try (ResultSet rs = meta.getColumns(null, "reference", "counterparties", "counterparty_id")) {
                assertTrue(rs.next());
                MeshgateJdbc.assertContains(rs.getString("REMARKS"), "Stable counterparty identifier");
            }
        }
        // A hidden column is absent from the caller's columns, as from every other listing.
        try (Connection conn = connect("cib-reporting")) {
            Map<String, String> columns = columnTypes(conn.getMetaData(), "reference", "counterparties");
            assertEquals(List.of("counterparty_id", "legal_name", "lob", "country", "tax_id", "contact_email", "onboarded_on"), new ArrayList<>(columns.keySet()));
        }
    }

    @Test
    void primary_and_foreign_keys() throws SQLException {
        try (Connection conn = connect("risk-officer")) {
            DatabaseMetaData meta = conn.getMetaData();
            try (ResultSet rs = meta.getPrimaryKeys(null, "reference", "counterparties")) {
                assertTrue(rs.next());
                assertEquals("counterparty_id", rs.getString("COLUMN_NAME"));
                assertEquals(1, rs.getInt("KEY_SEQ"));
                assertFalse(rs.next());
            }
            // The contracts declare no foreign keys: an empty answer, not an error.
            try (ResultSet rs = meta.getImportedKeys(null, "payments", "transactions")) {
                assertFalse(rs.next());
            }
            try (ResultSet rs = meta.getExportedKeys(null, "reference", "counterparties")) {
                assertFalse(rs.next());
            }
        }
    }

    @Test
    void type_info_keywords_and_quoting() throws SQLException {
        try (Connection conn = connect("intern")) {
            DatabaseMetaData meta = conn.getMetaData();
            // The driver answers getTypeInfo itself, empty, without asking the server (the
            // README says so); should a version ask GetXdbcTypeInfo, the mesh's types are there.
            Set<String> types = new TreeSet<>(strings(meta.getTypeInfo(), "TYPE_NAME"));
            assertTrue(types.isEmpty() || types.containsAll(Set.of("BIGINT", "DECIMAL", "DOUBLE", "DATE", "TIMESTAMP", "VARCHAR")), types.toString());
            assertEquals("\"", meta.getIdentifierQuoteString());
            String keywords = meta.getSQLKeywords();
            assertTrue(keywords.contains("QUALIFY"), keywords);
            assertEquals("meshgate", meta.getDatabaseProductName());
            assertTrue(meta.isReadOnly());
        }
        // Quoted identifiers reach the same table.
        try (Connection conn = connect("risk-officer")) {
            assertEquals(30000, MeshgateJdbc.single(conn, "SELECT count(\"lob\") FROM \"mesh\".\"reference\".\"counterparties\""));
        }
    }
}
