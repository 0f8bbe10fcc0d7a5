"""Fixtures for the simulator's own tests: real `python -m ollamasim` processes on free ports.

One shared, fast process serves most tests; modules that need particular scheduling knobs start their
own. Every test gets a clean state: counters zeroed, models unloaded, faults cleared.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.sim.simkit import clean, sim_config
from tests.support.simulator import SimulatorProcess


@pytest.fixture(scope="session")
def shared_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(sim_config()) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: SimulatorProcess) -> SimulatorProcess:
    return clean(shared_sim)


@pytest.fixture
def http(sim: SimulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=30) as client:
        yield client
