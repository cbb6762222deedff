"""The mesh console in a real browser: Debian's Chromium, headless, driven by Playwright,
against `meshgate demo` (its HTTP listener on a free port).

- Every persona of the reference mesh signs in and sees, on every product page, exactly the
  columns Flight `GetTables` gives them over ADBC (hidden columns absent), with treatments;
  a product they may not read is still found by search, with a request button.
- A consumer requests access in the browser, the owner approves it in their inbox, the
  consumer's next Flight SQL query sees the rows, and the flow graph has the new edge; the
  auditor sees every edge and no data.
- Keyboard and phone: the pages are reachable by Tab and fit a 390 px screen.
- Screenshots of the search, product, inbox and flow pages go to $MESHGATE_SCREENSHOTS (the
  README's, when tests/run-all.sh runs this), so they show the console as it is.
"""

import os
import pathlib
import shutil

import pytest

from conftest import USERS, connect, start_demo_with_http, visible_objects

PRODUCTS = ["markets.trades", "payments.transactions", "reference.counterparties"]


def _chromium():
    found = os.environ.get("MESHGATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no Chromium: run tests/run-all.sh (it installs Debian's chromium), or set MESHGATE_CHROMIUM")
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo of its own (its own governance store): (grpc address, console URL)."""
    process, grpc, url = start_demo_with_http(tmp_path_factory.mktemp("console-mesh"))
    yield grpc, url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Chromium's sandbox needs user namespaces, which root in a container lacks.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        chromium = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=args)
        yield chromium
        chromium.close()


def sign_in(browser, url, user, width=1280):
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(url + "/")
    assert page.url.endswith("/signin"), page.url
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", f"{user}-pw")
    page.click("button:text-is('Sign in')")
    assert page.url == url + "/", page.url
    assert page.locator(".who").inner_text() == user
    return page


def shown_columns(page):
    """{(table, column): treatment} of a product page's schema tables."""
    out = {}
    for table in page.locator("h3 code").all_inner_texts():
        rows = page.locator(f"h3:has(code:text-is('{table}')) + p.rows + table tbody tr")
        for i in range(rows.count()):
            cells = rows.nth(i).locator("td").all_inner_texts()
            out[(table.split(".", 1)[1], cells[0])] = cells[4]
    return out


def get_tables_columns(server, user):
    """{(schema, table, column)} Flight GetTables gives `user` (ADBC get_objects)."""
    return {
        (schema, table, column)
        for schema, tables in visible_objects(server, user).items()
        for table, columns in tables.items()
        for column in columns
    }


def screenshot(page, name):
    folder = os.environ.get("MESHGATE_SCREENSHOTS")
    if folder:
        path = pathlib.Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path / f"{name}.png"), full_page=True)


def test_every_persona_sees_on_each_product_page_what_get_tables_gives_them(demo, browser):
    server, url = demo
    for user in USERS:
        page = sign_in(browser, url, user)
        listed = page.locator("article.product h2 a").all_inner_texts()
        assert sorted(listed) == PRODUCTS, f"{user} discovers every product"
        readable = get_tables_columns(server, user)
        for product in PRODUCTS:
            domain = product.split(".")[0]
            page.goto(f"{url}/products/{product}")
            shown = shown_columns(page)
            seen = {(domain, t, c) for (t, c), treatment in shown.items() if treatment != "no access"}
            expected = {x for x in readable if x[0] == domain}
            assert seen == expected, f"{user} on {product}"
            if not expected:
                assert page.locator("button:text-is('Request access')").count() == 1, f"{user} may ask for {product}"
        page.context.close()
    # What the reference mesh says, spelled out for one reader: CIB's reporting sees the
    # counterparties' tax ids as tokens, e-mails masked, and no internal rating at all.
    page = sign_in(browser, url, "cib-reporting")
    page.goto(f"{url}/products/reference.counterparties")
    shown = shown_columns(page)
    assert shown[("counterparties", "tax_id")] == "tokenize(reference)"
    assert shown[("counterparties", "contact_email")] == "mask(email)"
    assert ("counterparties", "internal_rating") not in shown
    page.goto(f"{url}/?q=internal_rating")
    assert page.locator(".count").inner_text() == "0 product(s)"
    page.context.close()


def test_a_request_approved_in_the_inbox_opens_the_data_and_draws_the_flow(demo, browser):
    server, url = demo
    query = "SELECT count(*) AS n FROM reference.counterparties"
    with connect(server, "intern") as conn, conn.cursor() as cur:
        with pytest.raises(Exception, match="may not read"):
            cur.execute(query)

    owner = sign_in(browser, url, "ref-owner")
    owner.goto(f"{url}/flows")
    edges_before = owner.locator("path.edge").count()

    intern = sign_in(browser, url, "intern")
    intern.goto(f"{url}/products/reference.counterparties")
    screenshot_page = sign_in(browser, url, "cib-reporting")
    screenshot(screenshot_page, "search")
    screenshot_page.goto(f"{url}/products/reference.counterparties")
    screenshot(screenshot_page, "product")
    intern.fill("textarea[name=purpose]", "onboarding analysis <b>for Q3</b>")
    intern.fill("input[name=columns]", "counterparty_id, lob")
    intern.click("button:text-is('Request access')")
    assert intern.url == f"{url}/inbox"
    assert "pending" in intern.locator("main").inner_text()
    assert intern.locator("button[value=approve]").count() == 0, "the requester does not decide"

    owner.goto(f"{url}/inbox")
    card = owner.locator("article.request", has_text="intern asks for")
    assert "onboarding analysis <b>for Q3</b>" in card.inner_text(), "markup is shown as text"
    screenshot(owner, "inbox")
    card.locator("input[name=row_filter]").fill("lob = 'CIB'")
    card.locator("button[value=approve]").click()
    assert owner.url == f"{url}/inbox"
    grants = owner.locator("table", has=owner.locator("th:text-is('Holder')"))
    assert "intern" in grants.inner_text() and "lob = 'CIB'" in grants.inner_text()

    with connect(server, "intern") as conn, conn.cursor() as cur:
        cur.execute(query)
        assert cur.fetchone()[0] > 0
        cur.execute("SELECT DISTINCT lob FROM reference.counterparties")
        assert cur.fetchall() == [("CIB",)], "only the rows the owner granted"

    owner.goto(f"{url}/flows")
    assert owner.locator("path.edge").count() == edges_before + 1
    # Other consumers' flows, which the owner of counterparties sees only for its product.
    for user, sql in [
        ("cib-reporting", "SELECT count(*) FROM markets.trades"),
        ("cib-reporting", "SELECT count(*) FROM reference.counterparties"),
        ("risk-officer", "SELECT lob, count(*) FROM payments.transactions GROUP BY lob"),
        ("ccb-fraud", "SELECT count(*) FROM payments.transactions"),
    ]:
        with connect(server, user) as conn, conn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
    owner.goto(f"{url}/flows")
    assert set(owner.locator("svg a rect.product + text").all_text_contents()) == {"reference.counterparties"}
    auditor = sign_in(browser, url, "auditor")
    auditor.goto(f"{url}/flows")
    assert auditor.locator("path.edge").count() == 5, "every edge: the intern's, and those of three LOB applications (one reads two products)"
    assert set(auditor.locator("svg a rect.product + text").all_text_contents()) == set(PRODUCTS)
    screenshot(auditor, "flows")
    auditor.goto(f"{url}/audit?principal=intern")
    text = auditor.locator("main").inner_text()
    assert "intern" in text and "@" not in text, "records, never data"


def test_keyboard_and_phone(demo, browser):
    _, url = demo
    page = sign_in(browser, url, "risk-officer", width=390)
    for path in ["/", "/products/markets.trades", "/inbox", "/flows", "/audit"]:
        page.goto(url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
    page.goto(url + "/")
    reached = set()
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.getAttribute('name') || document.activeElement.textContent"))
    assert "q" in reached, f"the search box is reachable by keyboard: {reached}"
