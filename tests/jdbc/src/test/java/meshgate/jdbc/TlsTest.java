package meshgate.jdbc;

import static meshgate.jdbc.MeshgateJdbc.assertContains;
import static meshgate.jdbc.MeshgateJdbc.messages;
import static meshgate.jdbc.MeshgateJdbc.property;
import static meshgate.jdbc.MeshgateJdbc.single;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.Properties;

import org.junit.jupiter.api.Test;

/** TLS with a certificate from the mesh's own CA, and a bearer token instead of a password. */
class TlsTest {
    private static Connection open(String query) throws SQLException {
        return DriverManager.getConnection(property("meshgate.tls.url") + "?" + query, new Properties());
    }

    @Test
    void a_token_over_tls_with_the_mesh_ca_trusted() throws SQLException {
        String ca = property("meshgate.tls.ca");
        try (Connection conn = open("useEncryption=true&tlsRootCerts=" + ca + "&token=" + property("meshgate.tls.token"))) {
            // The token is risk-officer's: every row, protected values still protected.
            assertEquals(30000, single(conn, "SELECT count(*) FROM reference.counterparties"));
            assertEquals(0, single(conn, "SELECT count(*) FROM reference.counterparties WHERE tax_id NOT LIKE 'tok\\_%'"));
        }
        // The CA in a Java trust store instead of a PEM file.
        try (Connection conn = open("useEncryption=true&useSystemTrustStore=false&trustStore=" + property("meshgate.tls.truststore")
                + "&trustStorePassword=meshgate&token=" + property("meshgate.tls.token"))) {
            assertEquals(30000, single(conn, "SELECT count(*) FROM reference.counterparties"));
        }
        // A user and password over the same TLS connection work as well.
        try (Connection conn = open("useEncryption=true&tlsRootCerts=" + ca + "&user=cib-reporting&password=cib-reporting-pw")) {
            assertEquals(15000, single(conn, "SELECT count(*) FROM reference.counterparties"));
        }
    }

    @Test
    void an_untrusted_certificate_a_wrong_token_and_plain_tcp_are_refused() {
        String token = property("meshgate.tls.token");
        // The system's trust store does not know the mesh's CA.
        SQLException untrusted = assertThrows(SQLException.class, () -> single(open("useEncryption=true&token=" + token), "SELECT 1"));
        assertFalse(messages(untrusted).isEmpty());
        SQLException forged = assertThrows(SQLException.class,
                () -> single(open("useEncryption=true&tlsRootCerts=" + property("meshgate.tls.ca") + "&token=" + token.substring(0, token.length() - 4) + "AAAA"), "SELECT 1"));
        assertContains(messages(forged).toLowerCase(), "unauthenticated");
        assertThrows(SQLException.class, () -> single(open("useEncryption=false&token=" + token), "SELECT 1"));
    }
}
