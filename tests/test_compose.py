"""Docker cannot run here, so check compose.yaml's structure: services, commands, required variables."""

from __future__ import annotations

import json
import os
import subprocess
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
    assert "portal.web" in command("web")  # daphne serving portal.asgi:application (portal/web.py)
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
    # A restart keeps queues, leases and undrained usage records.
    assert "--appendonly yes" in command("redis")
    assert any(v.startswith("redis-data:") for v in SERVICES["redis"]["volumes"])


# -- the web process and the reverse proxy in front of it (issue 8, "Slow and many clients") ---------

CADDYFILE = Path(__file__).resolve().parents[1] / "deploy" / "Caddyfile"


def test_the_web_process_runs_with_a_listen_backlog_behind_the_proxy():
    web = SERVICES["web"]
    assert "-m portal.web" in command("web") and "--proxy-headers" in command("web")
    assert "WEB_LISTEN_BACKLOG" in web["environment"] and "WEB_IDLE_TIMEOUT_SECONDS" in web["environment"]
    assert "WEB_LISTEN_BACKLOG" in str(web["sysctls"]["net.core.somaxconn"]), "the kernel caps the backlog"
    assert "ports" not in web, "users reach daphne through the proxy only"
    env = web["environment"]
    assert env["TRUST_PROXY_HEADERS"] == "true" and env["SECURE_SSL_REDIRECT"] == "true"
    assert "127.0.0.1" in env["ALLOWED_HOSTS"], "the health check calls 127.0.0.1"


def test_stopping_the_web_container_lets_its_streams_finish():
    web = SERVICES["web"]
    assert "exec python -m portal.web" in command("web"), "the shell would swallow SIGTERM, and Docker kill daphne"
    drain = float(web["environment"]["WEB_DRAIN_SECONDS"].removeprefix("${WEB_DRAIN_SECONDS:-").removesuffix("}"))
    assert float(web["stop_grace_period"].removesuffix("s")) >= drain + 10


def test_the_proxy_terminates_tls_in_front_of_web():
    proxy = SERVICES["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    assert "internal" in proxy["environment"]["GATEHOUSE_TLS"], "no certificates needed by default"


def test_the_caddyfile_buffers_requests_limits_bodies_times_out_slow_clients_and_streams_sse():
    text = CADDYFILE.read_text()
    directives = [line.split("#")[0].strip() for line in text.splitlines()]
    for expected in ("tls {$GATEHOUSE_TLS:internal}", "max_size {$MAX_REQUEST_BODY_BYTES:20971520}",
                     "max_size {$UPLOAD_MAX_REQUEST_BYTES:209780736}",
                     "buffer_requests", "flush_interval -1", "read_header 10s", "read_body 60s",
                     "reverse_proxy web:8000 {"):
        assert expected in directives, expected
    assert not any(d.startswith("write ") for d in directives), "a write timeout would cut long streams"


def caddy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["caddy", *args, "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                          env={**os.environ, "HOME": os.environ.get("HOME", "/tmp"), **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_caddy_accepts_the_caddyfile_with_and_without_certificates():
    # As the simulator profile runs it: no certificates, Caddy's local CA.
    result = caddy("validate")
    assert result.returncode == 0, result.stderr
    # As production runs it: the operator's certificate files (adapt: the files are not here).
    result = caddy("adapt", env={"GATEHOUSE_DOMAIN": "gatehouse.example.org",
                                 "GATEHOUSE_TLS": "/certs/fullchain.pem /certs/privkey.pem"})
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    server = config["apps"]["http"]["servers"]["srv0"]
    assert server["read_header_timeout"] == 10 * 10**9 and "write_timeout" not in server
    assert config["apps"]["tls"]["certificates"]["load_files"][0]["certificate"] == "/certs/fullchain.pem"
    routes = server["routes"][0]["handle"][0]["routes"]
    uploads = {"path": ["/v1/files", "/api/files"]}
    # Every request meets exactly one body limit: file uploads theirs, everything else the API's.
    assert routes[0] == {"handle": [{"handler": "request_body", "max_size": 200 * 1024 * 1024 + 64 * 1024}],
                         "match": [uploads]}
    assert routes[1] == {"handle": [{"handler": "request_body", "max_size": 20 * 1024 * 1024}],
                         "match": [{"not": [uploads]}]}
    proxy = routes[2]["handle"][0]
    assert proxy["buffer_requests"] is True and proxy["flush_interval"] == -1


def test_the_image_holds_every_package_gatehouse_installs():
    """A package pyproject.toml installs but the Dockerfile never copies is missing from the image, and
    every process of the deployment fails to start."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    installed = {pattern.rstrip("*") for pattern in
                 tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {line.split()[1] for line in (root / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert installed <= copied, installed - copied
    local_apps = {name for name in (p.name for p in root.iterdir() if (p / "apps.py").exists())}
    assert local_apps <= installed, local_apps - installed


def test_uploaded_batch_files_outlive_the_containers_and_the_proxy_lets_uploads_through():
    for service in ("web", "worker", "batch-worker"):
        assert "batch-files:/app/.run/batch-files" in SERVICES[service]["volumes"]
    assert "batch-files" in COMPOSE["volumes"]
    assert SERVICES["proxy"]["environment"]["UPLOAD_MAX_REQUEST_BYTES"].endswith(":-209780736}")
