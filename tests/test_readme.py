"""The README reads in the order of a first hour: what Gatehouse is, the two commands, configuration,
the portal and connecting clients; deploying to production after all of that."""

from __future__ import annotations

import re

from tests.support.processes import REPO


def sections() -> list[str]:
    return re.findall(r"^## (.+)$", (REPO / "README.md").read_text(), flags=re.M)


def test_local_use_comes_before_deploying():
    order = sections()
    first_hour = ["Quick start", "Configuration", "Using the portal", "Connecting clients"]
    assert [title for title in order if title in first_hour] == first_hour
    deploying = order.index("Deploying with Docker Compose")
    assert all(order.index(title) < deploying for title in first_hour), order
    intro = (REPO / "README.md").read_text().split("\n## ", 1)[0]
    assert "OpenAI-compatible API" in intro and "make run" not in intro


def test_the_quick_start_has_the_two_commands():
    quick_start = (REPO / "README.md").read_text().split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run " in quick_start and "make test " in quick_start
