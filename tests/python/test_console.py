"""The operator console (docs/CONSOLE.md) in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium).

A pproxy of its own (embedded mode, conftest.run_proxy) so the test can change its
configuration: it starts with the librdkafka override `message.max.bytes: 1000`, so a delay
message whose body is 2000 bytes is accepted (the add limit is far higher) but its fire is
refused by the producer with MSG_SIZE_TOO_LARGE, code 11, which dead-letters at once (delay.md
§5.5). That is the reliable dead letter of embedded mode. Removing the override and sending
SIGHUP (kafkaOverrides are reloadable) fixes the cause, as an operator would, and the re-drive
button then delivers it. Mutations need the admin token, which the console asks for once.
"""

import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from thrift.protocol import TCompactProtocol
from thrift.transport import TSocket, TTransport

from producerProxy import ProducerService
from producerProxy.ttypes import DelayMessage, Message

import browser
from conftest import DELAY_TOPIC, run_proxy, write_config

TOKEN = "console-test-token"
SMALL_MAX = 'kafkaOverrides:\n  "*": {message.max.bytes: "1000", batch.size: "1000"}\n'
AUTH = "server:\n  adminToken: %s\n" % TOKEN
HOSTILE = ['<img src=x onerror="window.__pwned=1;alert(1)">',
           '"><script>window.__pwned=2</script>',
           "</code><svg onload=alert(1)>&amp;"]

why_not = browser.available()
# Skipped on a machine without the browser, never in CI, where scripts/setup.sh installs it.
pytestmark = pytest.mark.skipif(why_not is not None and not os.environ.get("CI"),
                                reason=why_not or "")


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def console_proxy(tmp_path_factory):
    with run_proxy(tmp_path_factory.mktemp("pproxy_console"), SMALL_MAX + AUTH) as p:
        p["base"] = "http://127.0.0.1:%d" % p["admin_port"]
        yield p


@pytest.fixture(scope="module")
def driver(console_proxy):
    d = browser.chromium()
    try:
        yield d
    finally:
        d.quit()


def thrift(p):
    sock = TSocket.TSocket(p["host"], p["port"])
    sock.setTimeout(20000)
    trans = TTransport.TFramedTransport(sock)
    trans.open()
    return trans, ProducerService.Client(TCompactProtocol.TCompactProtocol(trans))


def delay_add(p, body=b"console", in_s=3, dmsgtype=2, **kw):
    trans, c = thrift(p)
    try:
        fields = dict(topic=DELAY_TOPIC, body=body, tags="t", action=1,
                      timestamp=int(time.time()) + in_s, dmsgtype=dmsgtype, times=0)
        fields.update(kw)
        dm = DelayMessage(**fields)
        res = c.sendDelaySync(dm, 10000)
    finally:
        trans.close()
    assert res.code == 0, (res.code, res.msg)
    return res.uniqDelayMsgId


def http(p, path, method="GET", headers=None):
    req = urllib.request.Request(p["base"] + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def dead_ids(p):
    status, _, body = http(p, "/delay/dead")
    assert status == 200, body
    return {(d["id"], d["k"]) for d in json.loads(body)}


def severe_logs(driver, allow=()):
    """The page's console errors, less the expected ones (substrings in `allow`)."""
    return [e for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allow)]


def text_of(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, css).text


def assert_no_alert(driver):
    from selenium.common.exceptions import NoAlertPresentException
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    pytest.fail("an alert was opened: %r" % text)


# ---------------------------------------------------------------- tests
def test_headers_assets_and_cross_site_rules(console_proxy):
    p = console_proxy
    status, h, html = http(p, "/ui/")
    assert status == 200 and h["Content-Type"].startswith("text/html")
    csp = h["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'",
                      "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert h["X-Content-Type-Options"] == "nosniff" and h["Referrer-Policy"] == "no-referrer"
    assert h["Cache-Control"] == "no-cache"
    html = html.decode()
    assert "<script>" not in html and "http://" not in html and "https://" not in html
    assets = [part.split('"')[0] for part in html.split('"assets/')[1:]]
    assert sorted(a.rsplit(".", 1)[1] for a in assets) == ["css", "js"]
    for a in assets:
        status, h, _ = http(p, "/ui/assets/" + a)
        assert status == 200 and "immutable" in h["Cache-Control"]
        assert h["Content-Security-Policy"] == csp
    assert http(p, "/ui/assets/console.0000000000000000.js")[0] == 404
    # A deep link gets the same shell, its assets one level up; the id is not in the markup.
    status, _, deep = http(p, "/ui/delay/%3Cb%3Ehostile")
    assert status == 200 and b'src="../assets/console.' in deep
    assert b"hostile" not in deep
    status, _, body = http(p, "/ui/api/summary")
    assert status == 200 and "requestsByCode" in json.loads(body)
    # Mutations: the CLI's way (no browser headers, token) passes the cross-site rule and gets
    # to the endpoint; a cross-site page or a form never does, token or not.
    bearer = {"Authorization": "Bearer " + TOKEN}
    assert http(p, "/delay/dead/nope/0/purge", "POST", bearer)[0] == 404
    evil = dict(bearer, Origin="http://evil.example", **{"X-Pproxy-Console": "1"})
    assert http(p, "/delay/dead/nope/0/purge", "POST", evil)[0] == 403
    form = dict(bearer, **{"Content-Type": "application/x-www-form-urlencoded"})
    assert http(p, "/delay/dead/nope/0/purge", "POST", form)[0] == 403
    no_header = dict(bearer, Origin=p["base"], **{"Sec-Fetch-Site": "same-origin"})
    assert http(p, "/delay/dead/nope/0/purge", "POST", no_header)[0] == 403
    console = dict(no_header, **{"X-Pproxy-Console": "1"})
    assert http(p, "/delay/dead/nope/0/purge", "POST", console)[0] == 404
    assert http(p, "/delay/dead/nope/0/purge", "POST")[0] == 401


def test_overview_loads_and_refreshes_without_console_errors(console_proxy, driver):
    from selenium.webdriver.common.by import By
    p = console_proxy
    trans, c = thrift(p)
    try:
        for _ in range(5):
            assert c.sendSync(Message(topic="console_t1", key="k", body=b"x"), 5000).code == 0
    finally:
        trans.close()
    driver.get(p["base"] + "/ui/")
    browser.wait_for("node facts", lambda: "embedded" in text_of(driver, "#node-kv"))
    assert "console_t1" in text_of(driver, "#topics")
    # The second summary gives rates: a number, not the dash, in the requests table.
    stamp = text_of(driver, "#updated")
    browser.wait_for("a refresh without reload", lambda: text_of(driver, "#updated") != stamp,
                     timeout=15)
    rows = driver.find_elements(By.CSS_SELECTOR, "#requests-rates tr")
    assert any(r.text.startswith("0 OK") for r in rows), [r.text for r in rows]
    assert driver.find_elements(By.CSS_SELECTOR, "#lateness svg")
    assert "K_embedded" in text_of(driver, "#clusters")
    # The same document all along: the refresh fetched data, it did not reload the page.
    assert driver.execute_script("return performance.getEntriesByType('navigation').length") == 1
    assert severe_logs(driver) == []


def test_lookup_shows_state_then_fire(console_proxy, driver):
    from selenium.webdriver.common.by import By
    p = console_proxy
    dmid = delay_add(p, in_s=4)
    driver.get(p["base"] + "/ui/delay")
    box = driver.find_element(By.ID, "lookup-id")
    box.send_keys(dmid)
    driver.find_element(By.CSS_SELECTOR, "#lookup button").click()
    browser.wait_for("the message's state", lambda: text_of(driver, "#lookup-state") == "pending")
    assert text_of(driver, "#lookup-shown-id") == dmid
    assert driver.current_url.endswith("/ui/delay/" + urllib.parse.quote(dmid, safe=""))
    result = text_of(driver, "#lookup-result")
    assert DELAY_TOPIC in result and "one-shot" in result and "next due" in result
    # The page refreshes itself: the fire shows up without any click.
    browser.wait_for("the fire", lambda: text_of(driver, "#lookup-state") in ("fired", "completed"),
                     timeout=40)
    assert "finished" in text_of(driver, "#lookup-result")
    assert severe_logs(driver) == []


def test_redrive_and_purge_buttons_move_dead_letters(console_proxy, driver):
    from selenium.webdriver.common.by import By
    p = console_proxy
    big = b"B" * 2000
    redrive_id = delay_add(p, body=big, in_s=1)
    purge_id = delay_add(p, body=big, in_s=1)
    browser.wait_for("two dead letters", lambda: {(redrive_id, 0), (purge_id, 0)} <= dead_ids(p),
                     timeout=40)
    driver.get(p["base"] + "/ui/dead")
    row = '#dead-list tr[data-id="%s"]'
    browser.wait_for("the dead letters listed",
                     lambda: driver.find_elements(By.CSS_SELECTOR, row % redrive_id)
                     and driver.find_elements(By.CSS_SELECTOR, row % purge_id))
    listed = text_of(driver, row % redrive_id)
    assert DELAY_TOPIC in listed and "11" in listed

    def click(id_, cls):
        driver.find_element(By.CSS_SELECTOR, (row % id_) + " button." + cls).click()

    # Purge: two clicks. The first attempt has no token: 401, and the console asks for it.
    click(purge_id, "purge")
    click(purge_id, "purge")
    browser.wait_for("the token form", lambda: driver.find_element(By.ID, "auth").is_displayed())
    assert (purge_id, 0) in dead_ids(p)
    driver.find_element(By.ID, "auth-token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#auth button").click()
    browser.wait_for("the form gone", lambda: not driver.find_element(By.ID, "auth").is_displayed())
    click(purge_id, "purge")
    click(purge_id, "purge")
    browser.wait_for("the purge", lambda: (purge_id, 0) not in dead_ids(p))
    browser.wait_for("the purged row gone",
                     lambda: not driver.find_elements(By.CSS_SELECTOR, row % purge_id))
    assert "purged " + purge_id in text_of(driver, "#dead-outcome")

    # Fix the cause as an operator would (lift the size limit, reload), then re-drive.
    write_config(p["dir"], p["port"], p["admin_port"], AUTH)
    p["proc"].send_signal(signal.SIGHUP)
    browser.wait_for("the reload", lambda: b'result="applied"' in http(p, "/metrics")[2]
                     and b"pproxy_config_reloads_total" in http(p, "/metrics")[2], timeout=20)
    time.sleep(1)
    assert (redrive_id, 0) in dead_ids(p)
    click(redrive_id, "redrive")
    browser.wait_for("the re-drive outcome",
                     lambda: "re-driven " + redrive_id in text_of(driver, "#dead-outcome"))
    assert "code 0 OK" in text_of(driver, "#dead-outcome")
    assert (redrive_id, 0) not in dead_ids(p)
    browser.wait_for("the re-driven row gone",
                     lambda: not driver.find_elements(By.CSS_SELECTOR, row % redrive_id))
    # The only console error is the 401 of the first, token-less purge.
    assert severe_logs(driver, allow=("401",)) == []


def test_hostile_ids_and_topics_are_shown_as_text(console_proxy, driver):
    from selenium.webdriver.common.by import By
    p = console_proxy
    # A hostile topic on the wire: refused, counted under _other, the overview still renders.
    trans, c = thrift(p)
    try:
        assert c.sendSync(Message(topic=HOSTILE[0], key="k", body=b"x"), 5000).code == 13
    finally:
        trans.close()

    def clean():
        assert_no_alert(driver)
        assert driver.execute_script("return window.__pwned") is None
        assert not driver.find_elements(By.CSS_SELECTOR, "main img, main svg[onload], main script")
        assert len(driver.find_elements(By.TAG_NAME, "script")) == 1

    driver.get(p["base"] + "/ui/")
    browser.wait_for("the overview", lambda: "embedded" in text_of(driver, "#node-kv"))
    clean()
    for bad in HOSTILE:
        # Typed into the lookup box.
        driver.get(p["base"] + "/ui/delay")
        driver.find_element(By.ID, "lookup-id").send_keys(bad)
        driver.find_element(By.CSS_SELECTOR, "#lookup button").click()
        browser.wait_for("the hostile id shown", lambda: text_of(driver, "#lookup-shown-id") == bad)
        assert text_of(driver, "#lookup-state") == "unknown"
        clean()
        # As a deep link.
        driver.get(p["base"] + "/ui/delay/" + urllib.parse.quote(bad, safe=""))
        browser.wait_for("the deep-linked id shown",
                         lambda: text_of(driver, "#lookup-shown-id") == bad)
        assert driver.find_element(By.ID, "lookup-id").get_attribute("value") == bad
        clean()
        # As a dead-letter topic filter.
        driver.get(p["base"] + "/ui/dead")
        driver.find_element(By.ID, "dead-topic").send_keys(bad)
        driver.find_element(By.CSS_SELECTOR, "#dead-filter button").click()
        browser.wait_for("the hostile topic shown",
                         lambda: text_of(driver, "#dead-count").endswith("for topic " + bad))
        assert ("no dead letters for topic " + bad) in text_of(driver, "#dead-list")
        clean()
    assert severe_logs(driver, allow=("401",)) == []


def test_console_over_the_tls_admin_port(tmp_path_factory):
    """server.adminTls: the same page over https, its fetches and a mutation included."""
    from selenium.webdriver.common.by import By
    from test_tls import _leaf, _openssl

    d = tmp_path_factory.mktemp("pproxy_console_tls")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=console ca", cwd=d)
    _leaf(d, "server", "pproxy",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    extra = AUTH + "  adminTls: true\ntls:\n  certFile: server.pem\n  keyFile: server.key\n"
    with run_proxy(d, extra) as p:
        drv = browser.chromium(insecure_certs=True)
        try:
            base = "https://127.0.0.1:%d/ui/" % p["admin_port"]
            drv.get(base)
            browser.wait_for("the overview over TLS",
                             lambda: "embedded" in text_of(drv, "#node-kv"))
            assert drv.execute_script("return location.protocol") == "https:"
            # A mutation from the page, as the buttons send it: over TLS the browser adds
            # Origin and Sec-Fetch-Site, and the cross-site rule lets the console through.
            status = drv.execute_async_script("""
                const done = arguments[arguments.length - 1];
                fetch('../delay/dead/nope/0/purge', {method: 'POST', headers: {
                    'X-Pproxy-Console': '1', 'Authorization': 'Bearer %s'}})
                  .then(r => done(r.status), e => done(String(e)));""" % TOKEN)
            assert status == 404  # past the rules, to the endpoint: no such dead letter
            drv.find_element(By.CSS_SELECTOR, 'nav a[data-view="dead"]').click()
            browser.wait_for("the dead letters over TLS",
                             lambda: "no dead letters" in text_of(drv, "#dead-list"))
            assert severe_logs(drv, allow=("/delay/dead/nope/0/purge",)) == []
        finally:
            drv.quit()
