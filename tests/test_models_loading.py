"""While a model loads, the Models page and the status API say so, and the wait they show counts the
load (a model being loaded is not "under 1 s" away)."""

from __future__ import annotations

import re
import threading

import pytest

from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

MODEL = "slow-load:latest"


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    config = sim_config([MODEL], tokens_per_second=20, reply_tokens=10, load_seconds_per_gib=4.0)
    with django_db_blocker.unblock():
        world = Stack({"gpu": config}, models={MODEL: {"concurrency": 2, "max_queue": 8}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def _row(page: str) -> str:
    row = page[page.index(f">{MODEL}<"):]
    return row[:row.index("</tr>")]


def test_a_model_being_loaded_shows_its_load_and_a_wait_that_counts_it(stack, django_db_blocker):
    with django_db_blocker.unblock():
        staff = stack.staff_session()
    assert "no (loads on first use)" in _row(staff.get("/models/").text)
    threads = [threading.Thread(target=stack.chat, args=(MODEL,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        # All four queued (their threads may start slowly on a busy machine), and the load under way.
        eventually(lambda: "loading" in stack.placement(MODEL).values() and stack.waiting(MODEL) == 4,
                   what="loading with four waiting", timeout=30)
        row = _row(staff.get("/models/").text)
        assert 'data-label="Loaded now">loading now, on 1 server' in row
        wait = re.search(r'data-label="Typical wait">about (\d+) s<', row)
        assert wait and int(wait.group(1)) >= 2, row  # a four-second load, not "under 1 s"
        status = staff.get("/portal/api/status").json()["models"][MODEL]
        assert status["loading_on"] == 1
        assert status["queue_depth"] == 4
        assert status["typical_wait_ms"] >= 2000
    finally:
        for thread in threads:
            thread.join()
    row = _row(staff.get("/models/").text)
    assert 'data-label="Loaded now">yes, on 1 server' in row
    assert 'data-label="Typical wait">none<' in row
