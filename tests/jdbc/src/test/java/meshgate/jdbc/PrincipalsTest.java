package meshgate.jdbc;

import static meshgate.jdbc.MeshgateJdbc.assertContains;
import static meshgate.jdbc.MeshgateJdbc.connect;
import static meshgate.jdbc.MeshgateJdbc.messages;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/** For every principal of the reference mesh, the driver sees exactly what ADBC sees. */
class PrincipalsTest {
    @TestFactory
    Stream<DynamicTest> the_driver_sees_what_adbc_sees() throws Exception {
        Expected expected = Expected.read();
        assertFalse(expected.objects.isEmpty(), "the expected file lists no principal");
        return expected.objects.keySet().stream().map(user -> DynamicTest.dynamicTest(user, () -> check(user, expected)));
    }

    private static void check(String user, Expected expected) throws SQLException {
        try (Connection conn = connect(user)) {
            assertEquals(expected.objects.get(user), columns(conn.getMetaData()), user + ": tables and columns");
            for (Expected.Query query : expected.queries.get(user)) {
                try (Statement stmt = conn.createStatement()) {
                    if (query.denied != null) {
                        SQLException error = assertThrows(SQLException.class, () -> MeshgateJdbc.rows(stmt.executeQuery(query.sql)), user + ": " + query.sql);
                        assertContains(messages(error), query.denied);
                    } else {
                        assertEquals(query.rows, MeshgateJdbc.rows(stmt.executeQuery(query.sql)), user + ": " + query.sql);
                    }
                }
            }
        }
    }

    /** "schema.table" -> columns in order, for every table but the mesh catalog's own. */
    static Map<String, List<String>> columns(DatabaseMetaData meta) throws SQLException {
        Map<String, List<String>> out = new TreeMap<>();
        try (ResultSet rs = meta.getColumns(null, null, "%", "%")) {
            while (rs.next()) {
                String schema = rs.getString("TABLE_SCHEM");
                if (schema.equals("mesh_catalog")) {
                    continue;
                }
                String table = schema + "." + rs.getString("TABLE_NAME");
                List<String> cols = out.computeIfAbsent(table, t -> new ArrayList<>());
                assertEquals(cols.size() + 1, rs.getInt("ORDINAL_POSITION"), table);
                cols.add(rs.getString("COLUMN_NAME"));
            }
        }
        return out;
    }
}
