"""A scheduling test world of its own: a Redis, simulator processes, one or more daphne processes, and
Model/Node rows in the test database, so each scheduling test module starts from an empty queue.

    with Stack({"a": sim_config}, webs=2, models={"m:latest": {"concurrency": 4, "max_queue": 8}}) as stack:
        stack.client(web=1).chat.completions.create(...)

With `cluster=True` the queues, limits and usage records live on a real three-master Redis Cluster
(REDIS_CLUSTER), and Celery's broker and the channel layer on a plain Redis beside it, as in production.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import redis

from common.store import keys
from tests.support.processes import DaphneServer, RedisServer, eventually
from tests.support.redis_cluster import RedisCluster
from tests.support.simulator import SimulatorProcess


def web_env(redis_url: str, **extra: str) -> dict[str, str]:
    from django.db import connection

    from tests.conftest import _database_url

    return {
        "DATABASE_URL": _database_url(connection.settings_dict),
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "SECRET_KEY": "test-secret-key-for-the-live-server",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "NODE_PS_POLL_SECONDS": "0.5",
        # httpx sends no Secure cookie over plain HTTP, and staff_session signs in with httpx.
        "SECURE_COOKIES": "false",
        **extra,
    }

# The queue, limit and usage modules run their core tests on each kind of Redis: their `stack` fixture
# gets the kind as request.param (see on_each_redis).
ONE_REDIS = "one-redis"
CLUSTER = "redis-cluster"


def on_each_redis(*cluster_too: str):
    """A module's pytest_generate_tests hook: every test of the module gets its `stack` on one Redis, and
    the tests named also on a Redis Cluster (one module-scoped stack of each kind)."""
    def hook(metafunc) -> None:
        if "stack" in metafunc.fixturenames:
            kinds = [ONE_REDIS, CLUSTER] if metafunc.function.__name__ in cluster_too else [ONE_REDIS]
            metafunc.parametrize("stack", kinds, indirect=True, scope="module")
    return hook


class Stack:
    def __init__(self, sims: dict[str, dict[str, Any]], *, models: dict[str, dict[str, Any]] | None = None,
                 webs: int = 1, env: dict[str, str] | None = None, budgets: dict[str, int] | None = None,
                 users: tuple[str, ...] = ("ann", "ben"), batch_users: tuple[str, ...] = (),
                 openai_nodes: dict[str, str | dict[str, Any]] | None = None, cluster: bool = False,
                 node_fields: dict[str, dict[str, Any]] | None = None) -> None:
        from django.contrib.auth import get_user_model

        from apiaccess.models import ApiKey, Priority
        from inference.catalogue import sync_node
        from inference.models import Model, Node

        self.cluster = cluster
        self.redis = RedisCluster() if cluster else RedisServer()
        # What cannot live on a cluster: Celery's broker and the channel layer.
        self.plain_redis = RedisServer() if cluster else None
        self.sims = {name: SimulatorProcess(config) for name, config in sims.items()}
        self.nodes = []
        for name, sim in self.sims.items():
            node = Node.objects.create(url=sim.url, name=name, gpu_memory_bytes=(budgets or {}).get(name, 0),
                                       **(node_fields or {}).get(name, {}))
            assert sync_node(node).healthy
            self.nodes.append(node)
        served: set[str] = set()
        # OpenAI-compatible servers the test started itself (a real llama-server, say): name -> base URL,
        # or name -> Node fields (url, api_key_file...).
        for name, fields in (openai_nodes or {}).items():
            fields = {"url": fields} if isinstance(fields, str) else fields
            node = Node.objects.create(name=name, kind=Node.Kind.OPENAI,
                                       gpu_memory_bytes=(budgets or {}).get(name, 0), **fields)
            report = sync_node(node)
            assert report.healthy, report.error
            served.update(report.models)
            self.nodes.append(node)
        self.model_names = sorted({m for sim in self.sims.values() for m in sim.stats()["models"]} |
                                  set(models or {}) | served)
        for name, fields in (models or {}).items():
            assert Model.objects.filter(ollama_name=name).update(**fields) == 1, name
        self.keys: dict[str, str] = {}
        for username in users + batch_users:
            user, _ = get_user_model().objects.get_or_create(username=f"{username}-{self.redis.port}")
            priority = Priority.BATCH if username in batch_users else Priority.INTERACTIVE
            _, self.keys[username] = ApiKey.issue(user, name="sched", priority=priority)
        self.env = dict(env or {})
        if cluster:
            self.env.update(REDIS_CLUSTER="true", CELERY_BROKER_URL=self.plain_redis.url,
                            CHANNEL_LAYER_REDIS_URL=self.plain_redis.url)
        self.webs = [DaphneServer(self.process_env()) for _ in range(webs)]
        for web in self.webs:  # as a load balancer's health check would: starts each scheduler at once
            httpx.get(web.url + "/healthz", timeout=10)
        self.kv = self.redis.client() if cluster else redis.Redis.from_url(self.redis.url, decode_responses=True)

    def process_env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of this world (a web process, a Celery worker)."""
        return web_env(self.redis.url, **{**self.env, **extra})

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_web(self) -> int:
        """One more web process with the same environment as the others (say, replacing one that was
        killed), started as a load balancer's health check would start it; returns its index."""
        web = DaphneServer(self.process_env())
        self.webs.append(web)
        httpx.get(web.url + "/healthz", timeout=10)
        return len(self.webs) - 1

    def url(self, web: int = 0) -> str:
        return self.webs[web].url + "/v1"

    def client(self, user: str = "ann", web: int = 0, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url(web), api_key=self.keys[user], **kwargs)

    def headers(self, user: str = "ann") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}

    def chat(self, model: str, user: str = "ann", web: int = 0, timeout: float = 120, **body) -> httpx.Response:
        payload = {"model": model, "messages": [{"role": "user", "content": "hello"}], **body}
        return httpx.post(self.url(web) + "/chat/completions", headers=self.headers(user), json=payload,
                          timeout=timeout)

    # -- what Redis and the simulators say ------------------------------------------------------------

    def prefix(self, model: str) -> str:
        return keys.model_prefix(model)

    def waiting(self, model: str) -> int:
        return self.kv.zcard(keys.enqueued(model))

    def running(self, model: str) -> int:
        return sum(self.kv.zcard(keys.run(model, node.url)) for node in self.nodes)

    def admitted(self, model: str) -> int:
        """The model's tickets waiting or running, read in one transaction (the scripts move a ticket
        from one to the other atomically, so no ticket is counted twice or missed)."""
        pipe = self.kv.pipeline(transaction=True)
        pipe.zcard(keys.enqueued(model))
        for node in self.nodes:
            pipe.zcard(keys.run(model, node.url))
        return sum(pipe.execute())

    def placement(self, model: str) -> dict[str, str]:
        return self.kv.hgetall(keys.placement(model))

    def wait_loaded(self, model: str, sim: str, timeout: float = 30) -> None:
        url = self.sims[sim].url
        eventually(lambda: self.placement(model).get(url) == "ready", what=f"{model} ready on {sim}",
                   timeout=timeout)

    def ps(self, sim: str) -> list[str]:
        return [m["name"] for m in httpx.get(self.sims[sim].url + "/api/ps", timeout=5).json()["models"]]

    def staff_session(self, web: int = 0, permissions: tuple[str, ...] = ()) -> httpx.Client:
        """An httpx client signed in to the site as a staff member (through the admin's login form), with
        the admin permissions named as "app.codename"."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission

        username = f"ops-{self.redis.port}"
        user = get_user_model().objects.filter(username=username).first() or \
            get_user_model().objects.create_user(username, password="ops-password-1", is_staff=True)
        for permission in permissions:
            app, codename = permission.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
        client = httpx.Client(base_url=self.webs[web].url, timeout=10)
        client.get("/admin/login/")
        response = client.post("/admin/login/?next=/admin/", data={
            "username": username, "password": "ops-password-1", "next": "/admin/",
            "csrfmiddlewaretoken": client.cookies["csrftoken"]}, headers={"Referer": self.webs[web].url})
        assert response.status_code == 302, response.text
        return client

    def stop(self) -> None:
        from inference.models import Model, Node

        for web in self.webs:
            web.stop()
        for sim in self.sims.values():
            sim.stop()
        Node.objects.filter(pk__in=[n.pk for n in self.nodes]).delete()
        Model.objects.filter(ollama_name__in=self.model_names).delete()
        self.kv.close()
        self.redis.stop()
        if self.plain_redis is not None:
            self.plain_redis.stop()


def sim_config(models: list[str], *, num_parallel: int = 4, tokens_per_second: float = 10, reply_tokens: int = 10,
               gpu_memory: str = "24GiB", size: int = 1 << 30, **server: Any) -> dict[str, Any]:
    """A simulator whose replies take a predictable time: reply_tokens / tokens_per_second seconds."""
    return {
        "server": {"num_parallel": num_parallel, "tokens_per_second": tokens_per_second,
                   "time_to_first_token_ms": 20, "load_seconds_per_gib": 0.1, "gpu_memory": gpu_memory,
                   "response_tokens": [reply_tokens, reply_tokens], **server},
        "models": [{"name": name, "size": size, "capabilities": ["completion"], "context_length": 2048}
                   for name in models],
    }


def sse_lines(response: httpx.Response) -> list[str]:
    return [line for line in response.iter_lines() if line]


def data_events(lines: list[str]) -> list[Any]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ") and line != "data: [DONE]"]
