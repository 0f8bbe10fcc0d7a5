"""A day of Gatehouse at scale, simulated: 100 nodes, 200 models, 5,000 people on a virtual clock,
through Gatehouse's own Lua scripts (on a real redis-server) and swap actor, with simulated GPU
nodes. docs/scale.md describes it and its figures; `python -m bench.scale` runs it.

workload.py   the fleet, the catalogue, the people and their day of requests (seeded)
nodes.py      the simulated nodes and the engine the swap actor talks to
harness.py    the real scheduler code on the virtual clock (what is real, what is replaced)
driver.py     the event loop: requests, grants, releases, queue timeouts, actor rounds
feeder.py     the batch feeder's rules; sampling.py: measurements taken on the side
accounting.py time integrals, Redis command counters, Retry-After's watch
report.py     the figures; render.py: Markdown and plots; ceiling.py: one Redis core, N shards
"""
