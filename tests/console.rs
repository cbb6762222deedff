//! The mesh console over HTTP, as a browser uses it (requests to its router, cookies and forms
//! by hand): sign-in, sessions and CSRF; no page shows a principal more than Flight
//! `GetTables` does; script in owners' and consumers' text is shown as text; and the whole
//! loop of a consumer asking for a product and its owner approving it in the inbox.

use std::collections::BTreeSet;

use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use meshgate::console::{COOKIE, ConsoleConfig};
use meshgate::{Gateway, Governance};
use meshgate_lake_server::LakeServer;
use tempfile::TempDir;
use tower::ServiceExt;

/// The reference mesh with its own governance store (and, with `edit`, other contracts), and
/// the console over it.
struct Console {
    gateway: Gateway,
    router: axum::Router,
    _lake: LakeServer,
    _state: TempDir,
}

async fn console_with(edit: impl FnOnce(&mut meshgate::GatewayConfig)) -> Console {
    console_configured(edit, ConsoleConfig::default()).await
}

async fn console_configured(
    edit: impl FnOnce(&mut meshgate::GatewayConfig),
    config: ConsoleConfig,
) -> Console {
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("meshgate.db");
    let (gateway, lake) = crate::support::views::local_gateway(|c| {
        c.governance = Governance::Sqlite(db);
        edit(c);
    })
    .await;
    let router = meshgate::console::router(gateway.clone(), &config).unwrap();
    Console {
        gateway,
        router,
        _lake: lake,
        _state: state,
    }
}

/// One answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value `name` is set to by this answer's `Set-Cookie`s, with its attributes.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

impl Console {
    async fn send(&self, method: &str, path: &str, cookie: &str, form: &str) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if !cookie.is_empty() {
            request = request.header(header::COOKIE, cookie);
        }
        if method == "POST" {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let response = self
            .router
            .clone()
            .oneshot(
                request
                    .body(axum::body::Body::from(form.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: &str) -> Answer {
        self.send("GET", path, cookie, "").await
    }

    async fn post(&self, path: &str, cookie: &str, form: &str) -> Answer {
        self.send("POST", path, cookie, form).await
    }

    /// The nonce a freshly loaded sign-in form carries (and sets as its cookie).
    async fn signin_nonce(&self) -> String {
        let form = self.get("/signin", "").await;
        let cookie = form.set_cookie("meshgate_signin").unwrap();
        let pair = cookie.split(';').next().unwrap();
        pair.split_once('=').unwrap().1.to_string()
    }

    /// Sign `user` in with their password: the session cookie to send.
    async fn sign_in(&self, user: &str) -> String {
        let nonce = self.signin_nonce().await;
        let signed = self
            .post(
                "/signin",
                &format!("meshgate_signin={nonce}"),
                &format!("signin={nonce}&user={user}&password={user}-pw"),
            )
            .await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
        let cookie = signed.set_cookie(COOKIE).unwrap();
        cookie.split(';').next().unwrap().to_string()
    }
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn without_a_session_every_page_sends_to_sign_in_and_shows_nothing() {
    let console = console_with(|_| {}).await;
    for path in [
        "/",
        "/?q=tax",
        "/products/reference.counterparties",
        "/inbox",
        "/flows",
        "/audit?principal=cib-reporting",
    ] {
        for cookie in ["", "meshgate_session=mgs1.forged", "meshgate_session="] {
            let answer = console.get(path, cookie).await;
            assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path} {cookie}");
            assert_eq!(answer.location(), "/signin", "{path}");
            assert!(answer.body.is_empty(), "{path}: {}", answer.body);
        }
    }
    for path in [
        "/products/reference.counterparties/request",
        "/inbox/decide",
        "/signout",
    ] {
        let answer = console.post(path, "", "csrf=x&op=approve&id=r").await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert!(answer.body.is_empty(), "{path}: {}", answer.body);
    }
    // The sign-in page itself is strict about where it runs.
    let form = console.get("/signin", "").await;
    let policy = form.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.contains("default-src 'none'") && !policy.contains("script-src"));
    assert_eq!(form.headers[header::X_FRAME_OPTIONS], "DENY");
}

#[tokio::test]
async fn sign_in_needs_its_own_form_and_the_right_password_and_sign_out_ends_the_session() {
    let console = console_with(|_| {}).await;
    // A form posted without the nonce cookie of a sign-in page this browser loaded.
    let forged = console
        .post(
            "/signin",
            "",
            "signin=abc&user=cib-reporting&password=cib-reporting-pw",
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.set_cookie(COOKIE).is_none());
    let nonce = console.signin_nonce().await;
    let wrong = console
        .post(
            "/signin",
            &format!("meshgate_signin={nonce}"),
            &format!("signin={nonce}&user=cib-reporting&password=nope"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.set_cookie(COOKIE).is_none());

    let signed = console
        .post(
            "/signin",
            &format!("meshgate_signin={nonce}"),
            &format!("signin={nonce}&user=cib-reporting&password=cib-reporting-pw"),
        )
        .await;
    let cookie = signed.set_cookie(COOKIE).unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    let home = console.get("/", &session).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("cib-reporting"), "{}", home.body);

    // Signing out needs the session's CSRF token, then the cookie is worthless.
    let refused = console.post("/signout", &session, "csrf=00").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(console.get("/", &session).await.status, StatusCode::OK);
    let out = console
        .post("/signout", &session, &format!("csrf={}", home.csrf()))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie(COOKIE).unwrap().contains("Max-Age=0"));
    assert_eq!(
        console.get("/", &session).await.status,
        StatusCode::SEE_OTHER
    );
}

/// Every form refuses a missing or forged CSRF token, and the token of another session: a
/// page of another site (or another user's) cannot act for the viewer.
#[tokio::test]
async fn a_form_without_this_sessions_csrf_token_changes_nothing() {
    let console = console_with(|_| {}).await;
    let intern = console.sign_in("intern").await;
    let other = console.sign_in("auditor").await;
    let others_token = console.get("/", &other).await.csrf();
    let own_token = console.get("/", &intern).await.csrf();
    assert_ne!(own_token, others_token);
    let request = |csrf: &str| {
        format!(
            "{csrf}purpose=testing&columns=&valid_days=30",
            csrf = if csrf.is_empty() {
                String::new()
            } else {
                format!("csrf={csrf}&")
            }
        )
    };
    for csrf in ["", "0123456789abcdef0123456789abcdef", &others_token] {
        let answer = console
            .post(
                "/products/reference.counterparties/request",
                &intern,
                &request(csrf),
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "csrf `{csrf}`");
    }
    // Nothing was asked.
    let inbox = console.get("/inbox", &intern).await;
    assert!(!inbox.body.contains("testing"), "{}", inbox.body);
    // The session decides who acts: the auditor's cookie with the intern's token is refused.
    let answer = console
        .post(
            "/products/reference.counterparties/request",
            &other,
            &request(&own_token),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = console
        .post(
            "/products/reference.counterparties/request",
            &intern,
            &request(&own_token),
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let requests = console
        .gateway
        .workflow()
        .visible_requests(&Gateway::viewer(
            &console.gateway.known_principal("ref-owner").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].requester, "intern");
}

/// The columns a page shows a principal are the columns Flight `GetTables` gives them: for
/// a product they may read, exactly its visible columns (hidden ones absent); for one they
/// may not, the manifest's columns marked `no access` (what they would ask for).
#[tokio::test]
async fn no_page_shows_a_principal_more_than_get_tables_does() {
    let console = console_with(|_| {}).await;
    for user in console.gateway.user_names() {
        let principal = console.gateway.known_principal(&user).unwrap();
        let listed = console.gateway.session(principal).tables().await;
        let cookie = console.sign_in(&user).await;
        for product in console.gateway.catalog().products() {
            let page = console
                .get(&format!("/products/{}", product.id), &cookie)
                .await;
            assert_eq!(page.status, StatusCode::OK, "{user} {}", product.id);
            let shown = shown_columns(&page.body);
            let readable: BTreeSet<(String, String)> = listed
                .iter()
                .filter(|t| t.product == product.id)
                .flat_map(|t| {
                    t.arrow_schema
                        .fields()
                        .iter()
                        .map(|f| (t.name.clone(), f.name().clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let seen: BTreeSet<(String, String)> = shown
                .iter()
                .filter(|(_, _, treatment)| treatment != "no access")
                .map(|(t, c, _)| (t.clone(), c.clone()))
                .collect();
            assert_eq!(seen, readable, "{user} on {}", product.id);
            if readable.is_empty() {
                assert!(
                    page.body.contains("Request access"),
                    "{user} may ask for {}",
                    product.id
                );
            }
        }
        // Search lists every product, readable or not, and searching by a column finds
        // nothing the viewer may not know of.
        let home = console.get("/", &cookie).await;
        for product in console.gateway.catalog().products() {
            assert!(
                home.body.contains(&product.id),
                "{user} discovers {}",
                product.id
            );
        }
    }
    // Whether a row filter applies is said, never the filter itself.
    let cib = console.sign_in("cib-reporting").await;
    let risk = console.sign_in("risk-officer").await;
    let page = |cookie: String| {
        let console = &console;
        async move {
            console
                .get("/products/reference.counterparties", &cookie)
                .await
                .body
        }
    };
    let (cib_page, risk_page) = (page(cib.clone()).await, page(risk.clone()).await);
    assert!(
        cib_page.contains("Rows for you: some (a row filter applies)"),
        "{cib_page}"
    );
    assert!(!cib_page.contains("lob = ") && !cib_page.contains("principal.lob"));
    assert!(risk_page.contains("Rows for you: all"), "{risk_page}");
    assert!(
        risk_page.contains("#reference-data (slack)"),
        "the support channel: {risk_page}"
    );
    // A column hidden from a reader is not found by searching for it either.
    let found = console.get("/?q=internal_rating", &cib).await;
    assert!(found.body.contains("0 product(s)"), "{}", found.body);
    let found = console.get("/?q=internal_rating", &risk).await;
    assert!(found.body.contains("1 product(s)"), "{}", found.body);
}

/// `(table, column, treatment)` of a product page's schema tables.
fn shown_columns(body: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for section in body.split("<h3><code>").skip(1) {
        let qualified = &section[..section.find("</code>").unwrap()];
        let table = qualified.split_once('.').unwrap().1.to_string();
        let rows = &section[..section.find("</table>").unwrap()];
        for row in rows.split("<tr><td><code>").skip(1) {
            let column = row[..row.find("</code>").unwrap()].to_string();
            let at =
                row.find("<td class=\"treatment\">").unwrap() + "<td class=\"treatment\">".len();
            let treatment = row[at..at + row[at..].find("</td>").unwrap()].to_string();
            out.push((table.clone(), column, treatment));
        }
    }
    out
}

/// Text owners and consumers write (a contract's description, a request's purpose) is shown
/// as text, never as markup.
#[tokio::test]
async fn script_in_a_description_or_a_purpose_is_shown_as_text() {
    let script = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let console = console_with(|config| {
        let manifests = meshgate_reference::MANIFESTS.iter().map(|(name, text)| {
            let text = if name.ends_with("reference.counterparties.yaml") {
                text.replacen(
                    "description: Primary contact's e-mail address.",
                    &format!("description: \"{}\"", script.replace('"', "\\\"")),
                    1,
                )
            } else {
                text.to_string()
            };
            (*name, text)
        });
        config.catalog = meshgate::catalog::Catalog::from_sources(manifests).unwrap();
    })
    .await;
    let intern = console.sign_in("intern").await;
    let page = console
        .get("/products/reference.counterparties", &intern)
        .await;
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(!page.body.contains("<img"), "{}", page.body);
    assert!(
        page.body
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
    );
    let sent = console
        .post(
            "/products/reference.counterparties/request",
            &intern,
            &format!("csrf={}&purpose={}", page.csrf(), form_encode(script)),
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let owner = console.sign_in("ref-owner").await;
    let inbox = console.get("/inbox", &owner).await;
    assert!(inbox.body.contains("&lt;script&gt;"), "{}", inbox.body);
    assert!(!inbox.body.contains("<script"), "{}", inbox.body);
}

/// A consumer asks for a product on its page, its owner approves in the inbox, and the
/// consumer's next query sees the rows; the flow graph then has the edge, which the auditor
/// sees too, with no data on the page.
#[tokio::test]
async fn a_consumer_asks_the_owner_approves_and_the_next_query_sees_the_rows() {
    let console = console_with(|_| {}).await;
    let intern = console.gateway.known_principal("intern").unwrap();
    let sql = "SELECT count(*) FROM reference.counterparties";
    let denied = console.gateway.session(intern.clone()).collect(sql).await;
    assert!(denied.is_err());

    let cookie = console.sign_in("intern").await;
    let page = console
        .get("/products/reference.counterparties", &cookie)
        .await;
    assert!(page.body.contains("Request access"), "{}", page.body);
    let sent = console
        .post(
            "/products/reference.counterparties/request",
            &cookie,
            &format!(
                "csrf={}&purpose=onboarding+analysis&columns=counterparty_id%2C+lob&valid_days=30",
                page.csrf()
            ),
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let mine = console.get("/inbox", &cookie).await;
    assert!(mine.body.contains("pending"), "{}", mine.body);
    assert!(
        !mine.body.contains("value=\"approve\""),
        "the requester cannot decide: {}",
        mine.body
    );

    let owner = console.sign_in("ref-owner").await;
    let inbox = console.get("/inbox", &owner).await;
    assert!(inbox.body.contains("intern asks for"), "{}", inbox.body);
    let request_id = {
        let at = inbox.body.find("name=\"id\" value=\"").unwrap() + "name=\"id\" value=\"".len();
        inbox.body[at..at + inbox.body[at..].find('"').unwrap()].to_string()
    };
    // The requester cannot approve their own request, even with a valid form.
    let own = console
        .post(
            "/inbox/decide",
            &cookie,
            &format!("csrf={}&op=approve&id={request_id}", mine.csrf()),
        )
        .await;
    assert_eq!(own.status, StatusCode::BAD_REQUEST, "{}", own.body);
    let approved = console
        .post(
            "/inbox/decide",
            &owner,
            &format!(
                "csrf={}&op=approve&id={request_id}&row_filter={}&comment=ok",
                inbox.csrf(),
                form_encode("lob = 'CIB'")
            ),
        )
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);

    let batches = console.gateway.session(intern).collect(sql).await.unwrap();
    let counted =
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batches[0].column(0))
            .value(0);
    assert!(counted > 0);
    let owner_flows = console.get("/flows", &owner).await;
    assert!(
        owner_flows.body.contains("reference.counterparties")
            && owner_flows.body.contains("1 flow(s)"),
        "{}",
        owner_flows.body
    );
    // Over a period (the form sends an empty number for all time).
    for period in ["?days=1", "?days="] {
        let recent = console.get(&format!("/flows{period}"), &owner).await;
        assert_eq!(recent.status, StatusCode::OK, "{period}");
        assert!(
            recent.body.contains("1 flow(s)"),
            "{period}: {}",
            recent.body
        );
    }
    let auditor = console.sign_in("auditor").await;
    let flows = console.get("/flows", &auditor).await;
    assert!(
        flows.body.contains("<path class=\"edge\""),
        "{}",
        flows.body
    );
    let audit = console
        .get(
            "/audit?principal=intern&product=reference.counterparties",
            &auditor,
        )
        .await;
    assert!(audit.body.contains("<td>intern</td>"), "{}", audit.body);
    // Counts and names only: no cell of the product reaches the auditor's pages.
    for page in [&flows.body, &audit.body] {
        assert!(!page.contains("@"), "no e-mail address: {page}");
    }
}

/// An identity provider's token signs in as its principal, with its roles and attributes, for
/// no longer than the token lives; an expired or forged one does not.
#[tokio::test]
async fn an_identity_providers_token_signs_in_for_no_longer_than_it_lives() {
    use crate::flight_security::{claims, hs256, idp, now};
    let console = console_configured(
        |_| {},
        ConsoleConfig {
            jwt: idp().issuers,
            ..ConsoleConfig::default()
        },
    )
    .await;
    let sign_in = |token: String| {
        let console = &console;
        async move {
            let nonce = console.signin_nonce().await;
            console
                .post(
                    "/signin",
                    &format!("meshgate_signin={nonce}"),
                    &format!("signin={nonce}&token={}", form_encode(&token)),
                )
                .await
        }
    };
    let issuer = "https://hs.idp.test";
    let expired = sign_in(hs256(&claims(
        issuer,
        "hs.svc-cib",
        &["lob-system"],
        Some("CIB"),
        now() - 60,
    )))
    .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{}", expired.body);
    let forged = {
        let token = hs256(&claims(
            issuer,
            "hs.svc-cib",
            &["lob-system"],
            Some("CIB"),
            now() + 600,
        ));
        let (head, _) = token.rsplit_once('.').unwrap();
        sign_in(format!("{head}.c2lnbmF0dXJl")).await
    };
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.body);

    let signed = sign_in(hs256(&claims(
        issuer,
        "hs.svc-cib",
        &["lob-system"],
        Some("CIB"),
        now() + 600,
    )))
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let cookie = signed.set_cookie(COOKIE).unwrap();
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age <= 600, "the session ends with the token: {cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = console
        .get("/products/reference.counterparties", &session)
        .await;
    assert!(page.body.contains("hs.svc-cib"), "{}", page.body);
    // The token's role and attribute decide, as over Flight: a LOB system sees its own LOB.
    assert!(
        page.body
            .contains("Rows for you: some (a row filter applies)"),
        "{}",
        page.body
    );
    let principal = meshgate::Principal::new("hs.svc-cib")
        .with_role("lob-system")
        .with_attribute("lob", "CIB");
    let listed: BTreeSet<String> = console
        .gateway
        .session(principal)
        .tables()
        .await
        .iter()
        .filter(|t| t.product == "reference.counterparties")
        .flat_map(|t| {
            t.arrow_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let shown: BTreeSet<String> = shown_columns(&page.body)
        .into_iter()
        .filter(|(_, _, treatment)| treatment != "no access")
        .map(|(_, column, _)| column)
        .collect();
    assert_eq!(shown, listed);
}

/// The audit browser reads a page at a time from the store and goes on below the last record
/// shown, with its filters; an owner sees the records of their products, not others'.
#[tokio::test]
async fn the_audit_browser_pages_through_what_the_viewer_may_see() {
    let console = console_with(|_| {}).await;
    let intern = console.gateway.known_principal("intern").unwrap();
    for i in 0..55 {
        console
            .gateway
            .session(intern.clone())
            .collect(&format!("SELECT {i}"))
            .await
            .unwrap();
    }
    let auditor = console.sign_in("auditor").await;
    let rows = |body: &str| body.matches("<tr><td>").count();
    let first = console.get("/audit?principal=intern", &auditor).await;
    assert_eq!(rows(&first.body), 50, "{}", first.body);
    let at = first.body.find("rel=\"next\" href=\"").unwrap() + "rel=\"next\" href=\"".len();
    let next = first.body[at..at + first.body[at..].find('"').unwrap()].replace("&amp;", "&");
    assert!(
        next.contains("principal=intern") && next.contains("before="),
        "{next}"
    );
    let second = console.get(&next, &auditor).await;
    assert_eq!(rows(&second.body), 5, "{}", second.body);
    assert!(!second.body.contains("rel=\"next\""));
    // Filters that match nothing show nothing; an owner sees no record of the intern's,
    // which touched none of their products.
    let denied = console
        .get("/audit?principal=intern&decision=deny", &auditor)
        .await;
    assert_eq!(rows(&denied.body), 0);
    let owner = console.sign_in("ref-owner").await;
    let theirs = console.get("/audit?principal=intern", &owner).await;
    assert_eq!(rows(&theirs.body), 0, "{}", theirs.body);
}
