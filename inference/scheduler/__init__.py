"""The scheduler: per-model queues and slot leases in Redis (admission, grants, release), the swap actor
that decides which models are loaded where, node health, and what survives a Redis restart. It raises
domain errors (scheduling_errors.py); inference/web/http_errors.py turns them into HTTP answers."""
