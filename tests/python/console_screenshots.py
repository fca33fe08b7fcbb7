"""Regenerates docs/console/*.png: the console of a pproxy (embedded mode) with some traffic,
delay messages (one-shot, a loop, two dead letters), taken in headless Chromium.

Run through scripts/screenshots.sh, which prepares the virtualenv and builds nothing: the binary
is $PPROXY_BIN (default target/debug/pproxy).
"""

import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import browser
from conftest import DELAY_TOPIC, REPO_ROOT, run_proxy  # also puts the Thrift stubs on the path
from producerProxy.ttypes import Message
from test_console import SMALL_MAX, delay_add, text_of, thrift

OUT = REPO_ROOT / "docs" / "console"


def traffic(p):
    trans, c = thrift(p)
    try:
        for i in range(60):
            topic = ("orders", "payments", "audit")[i % 3]
            c.sendSync(Message(topic=topic, key="k%d" % i, body=b"x" * 64), 5000)
        c.sendBatchSync([Message(topic="orders", key="b%d" % i, body=b"y") for i in range(10)])
        c.sendSync(Message(topic="not a topic!", body=b"x"), 5000)  # refused: 13
        c.sendSync(Message(topic=DELAY_TOPIC, body=b"x"), 5000)     # a delay topic: 19
    finally:
        trans.close()


def shot(driver, name, height=None):
    OUT.mkdir(parents=True, exist_ok=True)
    h = height or driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, max(600, min(int(h) + 20, 2400)))
    time.sleep(0.5)
    path = OUT / ("%s.png" % name)
    driver.save_screenshot(str(path))
    print("wrote", path.relative_to(REPO_ROOT))


def main():
    with tempfile.TemporaryDirectory(prefix="pproxy-shots-") as tmp, \
            run_proxy(Path(tmp), SMALL_MAX) as p:
        base = "http://127.0.0.1:%d/ui/" % p["admin_port"]
        for s in (1, 1, 2, 2, 2, 3):
            delay_add(p, in_s=s)
        for s in (600, 3600, 86400):
            delay_add(p, in_s=s)
        loop = delay_add(p, in_s=1, dmsgtype=3, interval=3, times=6,
                         expire=int(time.time()) + 3600)
        for _ in range(2):
            delay_add(p, body=b"B" * 2000, in_s=1)  # refused by the broker limit: dead letters
        driver = browser.chromium()
        try:
            driver.get(base)
            browser.wait_for("the overview", lambda: "embedded" in text_of(driver, "#node-kv"))
            traffic(p)
            time.sleep(5.5)
            traffic(p)
            stamp = text_of(driver, "#updated")
            browser.wait_for("a refresh", lambda: text_of(driver, "#updated") != stamp, timeout=15)
            shot(driver, "overview")
            driver.set_window_size(1440, 1000)
            driver.get(base + "delay/" + urllib.parse.quote(loop, safe=""))
            browser.wait_for("the loop in progress",
                             lambda: " of 6 fired" in text_of(driver, "#lookup-result"),
                             timeout=30)
            shot(driver, "delay-lookup")
            driver.set_window_size(1440, 1000)
            driver.get(base + "dead")
            browser.wait_for("the dead letters", lambda: "2 shown" in text_of(driver, "#dead-count"),
                             timeout=30)
            shot(driver, "dead-letters")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            if errors:
                print("console errors:", errors, file=sys.stderr)
                return 1
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
