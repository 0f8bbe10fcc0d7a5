"""Debian's headless Chromium for Playwright (it cannot download a browser here), and axe-core."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support.node import NODE_DIR, node_with_packages
from tests.support.processes import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Screenshots for people to look at; kept out of git.
ARTIFACTS = REPO / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
}"""


def axe_script() -> Path:
    node_with_packages()  # installs axe-core with the other locked Node packages when missing
    return NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"


def serious_accessibility_violations(page) -> list[dict]:
    """axe-core's serious and critical findings on the page as it is now."""
    # Evaluated, not added as a <script>: the portal's Content-Security-Policy rightly refuses inline
    # scripts, and the test's tool must not need the policy loosened.
    page.evaluate(axe_script().read_text())
    return [v for v in page.evaluate(_AXE_RUN) if v["impact"] in ("serious", "critical")]


def screenshot(page, name: str) -> Path:
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, one per test module (tests/conftest.py makes it every module's)."""
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
