"""Docker cannot run here, so check compose.yaml's structure: services, commands, required variables."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[1] / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def command(service: str) -> str:
    cmd = SERVICES[service]["command"]
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def test_it_has_every_production_service():
    assert {"redis", "postgres", "ollama", "web", "worker", "beat", "simulator"} <= set(SERVICES)


def test_it_runs_the_right_commands():
    assert "daphne" in command("web") and "portal.asgi:application" in command("web")
    assert "migrate" in command("web")
    assert "celery -A portal worker" in command("worker")
    assert "celery -A portal beat" in command("beat")
    assert "-m ollamasim" in command("simulator")


def test_it_passes_the_required_settings_to_gatehouse_processes():
    for name in ("web", "worker", "beat"):
        env = SERVICES[name]["environment"]
        for var in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "OLLAMA_NODES", "ALLOWED_HOSTS"):
            assert var in env, f"{name} lacks {var}"
        assert env["DEBUG"] == "false"
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_it_configures_ollama_for_gatehouse():
    ollama = SERVICES["ollama"]
    env = ollama["environment"]
    assert "DEFAULT_MODEL_CONCURRENCY" in env["OLLAMA_NUM_PARALLEL"], "NUM_PARALLEL must follow the per-model concurrency"
    assert "OLLAMA_KEEP_ALIVE" in env and "OLLAMA_MAX_LOADED_MODELS" in env
    devices = ollama["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_it_keeps_the_simulator_behind_a_profile():
    assert SERVICES["simulator"]["profiles"] == ["simulator"]


def test_it_health_checks_the_stores():
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert "ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])
    assert "noeviction" in command("redis")
