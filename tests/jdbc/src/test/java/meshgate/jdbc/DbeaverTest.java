package meshgate.jdbc;

import static meshgate.jdbc.MeshgateJdbc.connect;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;

/**
 * The calls DBeaver's generic JDBC data source makes on connect and when the navigator tree
 * is expanded down to a table and its data tab is opened, in that order. Each must answer
 * (an unsupported call is refused by the driver itself, never by a failing server call).
 */
class DbeaverTest {
    @Test
    void connect_then_expand_the_tree_then_open_a_table() throws SQLException {
        try (Connection conn = connect("cib-reporting")) {
            // Connect: what the connection and the server are.
            DatabaseMetaData meta = conn.getMetaData();
            assertEquals("meshgate", meta.getDatabaseProductName());
            assertFalse(meta.getDatabaseProductVersion().isEmpty());
            assertFalse(meta.getDriverName().isEmpty());
            meta.getDriverVersion();
            meta.getDatabaseMajorVersion();
            conn.getAutoCommit();
            conn.setAutoCommit(true);
            meta.supportsTransactions();
            meta.getDefaultTransactionIsolation();
            conn.getTransactionIsolation();
            conn.isReadOnly();
            conn.getCatalog();
            conn.getSchema();
            // The SQL editor's dialect: quoting, keywords, function lists, names.
            assertEquals("\"", meta.getIdentifierQuoteString());
            assertFalse(meta.getSQLKeywords().isEmpty());
            assertTrue(List.of(meta.getNumericFunctions().split(", ")).contains("ABS"), meta.getNumericFunctions());
            assertTrue(List.of(meta.getStringFunctions().split(", ")).contains("LOWER"), meta.getStringFunctions());
            meta.getSystemFunctions();
            meta.getTimeDateFunctions();
            meta.getSearchStringEscape();
            meta.getExtraNameCharacters();
            meta.storesLowerCaseIdentifiers();
            meta.supportsMixedCaseQuotedIdentifiers();
            meta.getCatalogSeparator();
            meta.getCatalogTerm();
            meta.getSchemaTerm();
            meta.supportsSchemasInTableDefinitions();
            meta.supportsCatalogsInTableDefinitions();
            // The navigator: table types, catalogs, schemas.
            List<String> types = new ArrayList<>();
            try (ResultSet rs = meta.getTableTypes()) {
                while (rs.next()) {
                    types.add(rs.getString(1));
                }
            }
            assertTrue(types.contains("TABLE"), types.toString());
            try (ResultSet rs = meta.getCatalogs()) {
                assertTrue(rs.next());
                assertEquals("mesh", rs.getString("TABLE_CAT"));
            }
            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = meta.getSchemas("mesh", null)) {
                while (rs.next()) {
                    schemas.add(rs.getString("TABLE_SCHEM"));
                }
            }
            assertTrue(schemas.contains("reference"), schemas.toString());
            // Expand every schema; then a table: its columns, keys and indexes.
            int tables = 0;
            for (String schema : schemas) {
                try (ResultSet rs = meta.getTables("mesh", schema, "%", null)) {
                    while (rs.next()) {
                        tables++;
                    }
                }
            }
            assertTrue(tables >= 2, "" + tables);
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns("mesh", "reference", "counterparties", "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME"));
                }
            }
            assertFalse(columns.contains("internal_rating"), columns.toString());
            try (ResultSet rs = meta.getPrimaryKeys("mesh", "reference", "counterparties")) {
                assertTrue(rs.next());
            }
            meta.getImportedKeys("mesh", "reference", "counterparties").close();
            meta.getExportedKeys("mesh", "reference", "counterparties").close();
            meta.getIndexInfo("mesh", "reference", "counterparties", false, true).close();
            // The data tab: the first 200 rows, as DBeaver asks for them.
            try (Statement stmt = conn.createStatement()) {
                stmt.setMaxRows(200);
                stmt.setFetchSize(200);
                try (ResultSet rs = stmt.executeQuery("SELECT * FROM reference.counterparties")) {
                    assertEquals(columns.size(), rs.getMetaData().getColumnCount());
                    int rows = 0;
                    while (rs.next()) {
                        rows++;
                        assertEquals("CIB", rs.getString("lob"));
                    }
                    assertEquals(200, rows);
                }
                // Its row count, as the status bar shows it.
                try (ResultSet rs = stmt.executeQuery("SELECT COUNT(*) FROM reference.counterparties")) {
                    assertTrue(rs.next());
                    assertEquals(15000, rs.getLong(1));
                }
            }
        }
    }
}
