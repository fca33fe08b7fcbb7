"""Headless Chromium from Debian's packages (chromium, chromium-driver) driven by Selenium, for
the console test and the screenshot script. Nothing is downloaded: the driver and browser
paths are given, so Selenium Manager is never asked.

$CHROMIUM_BIN and $CHROMEDRIVER override /usr/bin/chromium and /usr/bin/chromedriver.
"""

import os
import shutil
import time

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def available():
    """Why a browser cannot be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (scripts/pytest.sh installs it)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            return "%s is missing (scripts/setup.sh --tests installs chromium chromium-driver)" % path
    return None


def chromium(width=1440, height=1000, insecure_certs=False):
    """A headless Chromium WebDriver that records the page's console (goog:loggingPrefs);
    `insecure_certs` accepts a test CA's certificate (the admin port on TLS)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=%d,%d" % (width, height), "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--hide-scrollbars",
                "--force-color-profile=srgb", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if insecure_certs:
        opts.set_capability("acceptInsecureCerts", True)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def wait_for(what, check, timeout=20.0, interval=0.2):
    """Polls `check()` until it returns a true value (returned) or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = check()
            if got:
                return got
            last = got
        except Exception as e:  # the DOM may change under us between two polls
            last = e
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)
