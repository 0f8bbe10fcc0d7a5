"""The scale simulation of the scheduler (bench/scale/): a day of 100 nodes, 200 models and 5,000 people
on a virtual clock, through Gatehouse's own Lua scripts and swap actor; then the Redis ceiling.

    .venv/bin/python bench/scale_sim.py [--scale 0.1 --hours 2 --start-hour 9] [--no-ceiling]

Same as `python -m bench.scale`; see bench/scale/__main__.py for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale.__main__ import main  # noqa: E402

if __name__ == "__main__":
    main()
