package meshgate.jdbc;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What ADBC saw for every principal, as tests/python/test_jdbc.py wrote it (one record per
 * line, fields separated by tabs):
 *
 * <pre>
 * O user schema table col1,col2,...   a table GetObjects lists, with its columns in order
 * Q user id sql                       a query the principal ran
 * R user id v1 v2 ...                 one row of its result, rendered as MeshgateJdbc.render does
 * D user id message                   the query was refused with this gateway message
 * </pre>
 */
final class Expected {
    /** user -> "schema.table" -> columns. */
    final Map<String, Map<String, List<String>>> objects = new TreeMap<>();
    /** user -> queries, in the order they were run. */
    final Map<String, List<Query>> queries = new TreeMap<>();

    static final class Query {
        final String sql;
        final List<List<String>> rows = new ArrayList<>();
        String denied;

        Query(String sql) {
            this.sql = sql;
        }
    }

    static Expected read() throws IOException {
        Expected out = new Expected();
        Map<String, Map<String, Query>> byId = new LinkedHashMap<>();
        for (String line : Files.readAllLines(Path.of(MeshgateJdbc.property("meshgate.expected")), StandardCharsets.UTF_8)) {
            String[] f = line.split("\t", -1);
            String user = f[1];
            out.objects.computeIfAbsent(user, u -> new TreeMap<>());
            out.queries.computeIfAbsent(user, u -> new ArrayList<>());
            switch (f[0]) {
                case "O" -> out.objects.get(user).put(f[2] + "." + f[3], f[4].isEmpty() ? List.of() : Arrays.asList(f[4].split(",")));
                case "Q" -> {
                    Query q = new Query(f[3]);
                    byId.computeIfAbsent(user, u -> new LinkedHashMap<>()).put(f[2], q);
                    out.queries.get(user).add(q);
                }
                case "R" -> byId.get(user).get(f[2]).rows.add(Arrays.asList(f).subList(3, f.length));
                case "D" -> byId.get(user).get(f[2]).denied = f[3];
                default -> throw new IOException("unknown record `" + f[0] + "` in the expected file");
            }
        }
        return out;
    }
}
