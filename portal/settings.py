"""Gatehouse settings. Every value comes from an environment variable with a working default;
the README's configuration table lists them all."""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from common.store.keys import CHANNEL_LAYER_PREFIX
from portal.env import envbool, envfloat, envint, envlist, envsecret, envstr
from portal.storage_settings import batch_files_storage

BASE_DIR = Path(__file__).resolve().parent.parent


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


DEBUG = envbool("DEBUG", True)

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        # A guessable key lets anyone forge sessions: production must set one.
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off.")
    SECRET_KEY = "dev-insecure-gatehouse-key-do-not-use-in-production"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
# An IPv6 address is matched in brackets ("[::1]", as in a Host header): accept it written without.
ALLOWED_HOSTS = [f"[{host}]" if _is_ipv6(host) else host for host in ALLOWED_HOSTS]
# The public URL in links and snippets. Empty: each page uses the URL it was requested on (common/siteurl.py).
SITE_URL = envstr("SITE_URL", "").strip().rstrip("/")
# The public URL is always a trusted origin for forms, also behind a proxy that hides the scheme.
CSRF_TRUSTED_ORIGINS = [*envlist("CSRF_TRUSTED_ORIGINS"), *([SITE_URL] if SITE_URL else [])]
# Where `make run` serves (portal/management/commands/runstack.py).
WEB_HOST = envstr("WEB_HOST", "127.0.0.1")
WEB_PORT = envint("WEB_PORT", 8000, minimum=1)
# Where `make run` keeps its runtime files (first admin password, beat schedule, local Redis log).
RUN_DIR = Path(envstr("RUN_DIR", str(BASE_DIR / ".run")))

INSTALLED_APPS = [
    # daphne first, so runserver is the ASGI server too (channels installation docs).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "channels",
    "portal",
    "apiaccess",
    "inference",
    "usage",
    "batches",
]

MIDDLEWARE = [
    "inference.web.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # daphne serves no static files: WhiteNoise serves the admin's CSS/JS (no CDN, works offline).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.audit.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.security.ContentSecurityPolicyMiddleware",
]

# The OpenAI-compatible API (/v1/, /api/) runs with only this (portal/asgi.py explains why).
API_MIDDLEWARE = ["inference.web.middleware.RequestIdMiddleware"]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.portal",
            ],
        },
    },
]

# SQLite unless DATABASE_URL is set. CONN_MAX_AGE=0 under ASGI (Django's async docs: persistent connections are not safe under ASGI).
DATABASE_URL = envstr("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                             "NAME": envstr("SQLITE_PATH", str(BASE_DIR / "db.sqlite3"))}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file. WAL lets readers work while one process
    # writes; the timeout is SQLite's busy timeout (wait for a lock rather than fail at once); IMMEDIATE
    # takes the write lock when a transaction starts, since a read lock that must be upgraded midway
    # fails at once with "database is locked", whatever the busy timeout.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        **DATABASES["default"].get("OPTIONS", {}),
    }
# The test suite runs a real daphne process beside pytest, so the test database must be a file it can
# open; one per test run, so two runs on one machine never share (and delete) each other's.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(tempfile.gettempdir(), f"gatehouse-test-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# In debug, serve straight from the apps' static folders; production serves `collectstatic` output.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Sign-in, sign-up, single sign-on ----------------------------------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
# Off by default: staff create accounts in the admin. On, anyone who reaches the site may register.
SIGNUP_ENABLED = envbool("SIGNUP_ENABLED", False)

AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# OpenID Connect single sign-on (mozilla-django-oidc); off unless OIDC_ENABLED and the endpoints are set.
OIDC_ENABLED = envbool("OIDC_ENABLED", False)
OIDC_PROVIDER_NAME = envstr("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_RP_CLIENT_ID = envstr("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = envsecret("OIDC_RP_CLIENT_SECRET") or ""
OIDC_OP_AUTHORIZATION_ENDPOINT = envstr("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = envstr("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = envstr("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = envstr("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = envstr("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = envstr("OIDC_RP_SCOPES", "openid email profile")
OIDC_USE_PKCE = envbool("OIDC_USE_PKCE", True)
OIDC_TIMEOUT = envfloat("OIDC_TIMEOUT", 10.0)
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?sso=failed"
if OIDC_ENABLED:
    _missing = [name for name in ("OIDC_RP_CLIENT_ID", "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT",
                                  "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT") if not globals()[name]]
    if _missing:
        raise ImproperlyConfigured(f"OIDC_ENABLED is on but these are not set: {', '.join(_missing)}")
    INSTALLED_APPS.append("mozilla_django_oidc")
    AUTHENTICATION_BACKENDS.append("portal.oidc.GatehouseOIDCBackend")

# --- Production hardening (on whenever DEBUG is off) -------------------------------------------
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
# Django sends HSTS only on HTTPS responses, so this is harmless behind plain-HTTP test servers.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
# Health checks call the web process directly over plain HTTP, from inside its own network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Portal pages only (portal/security.py); the API answers JSON to programs, not pages to browsers.
CONTENT_SECURITY_POLICY = envstr(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'",
)
# Browser pages allowed to call the API (inference/web/cors.py), e.g. https://app.example.org; none by default.
API_CORS_ALLOWED_ORIGINS = frozenset(envlist("API_CORS_ALLOWED_ORIGINS"))
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-For.
TRUST_PROXY_HEADERS = envbool("TRUST_PROXY_HEADERS", False)
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

# --- Redis, Celery ---------------------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
# REDIS_URL names one node of a Redis Cluster: the queues, limits and usage records spread over its
# shards by hash tag. Celery's broker and the channel layer cannot use a cluster: see below.
REDIS_CLUSTER = envbool("REDIS_CLUSTER", False)
# The live dashboard's channel layer (channels_redis has no cluster support): a plain Redis.
CHANNEL_LAYER_REDIS_URL = envstr("CHANNEL_LAYER_REDIS_URL", REDIS_URL)

# The live dashboard's websockets (portal/dashboard.py) reach every web process through Redis.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                              "CONFIG": {"hosts": [CHANNEL_LAYER_REDIS_URL], "prefix": CHANNEL_LAYER_PREFIX}}}

# Celery's broker is a setting of its own: a standalone Redis (the default is REDIS_URL's), Redis
# Sentinel (sentinel://host:26379;sentinel://host2:26379, with CELERY_BROKER_SENTINEL_MASTER) or RabbitMQ
# (amqp://user:password@host:5672/vhost). Never a Redis Cluster: Celery cannot use one as its broker
# (https://github.com/celery/celery/issues/2852), so a deployment whose REDIS_URL is a cluster sets this.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", REDIS_URL)
CELERY_BROKER_SENTINEL_MASTER = envstr("CELERY_BROKER_SENTINEL_MASTER", "")
if REDIS_CLUSTER and (CELERY_BROKER_URL == REDIS_URL or CHANNEL_LAYER_REDIS_URL == REDIS_URL):
    raise ImproperlyConfigured("REDIS_CLUSTER is on: set CELERY_BROKER_URL and CHANNEL_LAYER_REDIS_URL to a Redis "
                               "that is not the cluster (Celery and the channel layer cannot use a Redis Cluster).")
if CELERY_BROKER_URL.startswith("sentinel://"):
    if not CELERY_BROKER_SENTINEL_MASTER:
        raise ImproperlyConfigured("CELERY_BROKER_URL names Redis Sentinels: set CELERY_BROKER_SENTINEL_MASTER to "
                                   "the name of the master they watch.")
    CELERY_BROKER_TRANSPORT_OPTIONS = {"master_name": CELERY_BROKER_SENTINEL_MASTER}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
NODE_POLL_SECONDS = envfloat("NODE_POLL_SECONDS", 30.0)
KEY_LAST_USED_FLUSH_SECONDS = envfloat("KEY_LAST_USED_FLUSH_SECONDS", 60.0)
USAGE_DRAIN_SECONDS = envfloat("USAGE_DRAIN_SECONDS", 10.0)
USAGE_ROLLUP_SECONDS = envfloat("USAGE_ROLLUP_SECONDS", 3600.0)
# Raw usage records are rolled up into daily rows after this many days (the usage pages show 30).
USAGE_RAW_RETENTION_DAYS = envint("USAGE_RAW_RETENTION_DAYS", 90, minimum=31)
USAGE_ROLLUP_RETENTION_DAYS = envint("USAGE_ROLLUP_RETENTION_DAYS", 0, minimum=0)  # 0: keep for ever
# --- The Batch API's feeder (batches/feeder.py) ---
BATCH_FEED_SECONDS = envfloat("BATCH_FEED_SECONDS", 5.0)
# A killed feeder's batches resume this long after it died.
BATCH_FEEDER_LEASE_SECONDS = envfloat("BATCH_FEEDER_LEASE_SECONDS", 15.0)
BATCH_FEEDER_IDLE_SECONDS = envfloat("BATCH_FEEDER_IDLE_SECONDS", 30.0)
# Batch lines in flight per slot of a model (running or next in its queue), over all batches.
BATCH_LINES_PER_SLOT = envint("BATCH_LINES_PER_SLOT", 2, minimum=1)
BATCH_MAX_ACTIVE_PER_PERSON = envint("BATCH_MAX_ACTIVE_PER_PERSON", 10, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sync-catalogue": {"task": "inference.tasks.sync_catalogue", "schedule": NODE_POLL_SECONDS},
    "flush-key-last-used": {"task": "apiaccess.tasks.flush_key_last_used", "schedule": KEY_LAST_USED_FLUSH_SECONDS},
    "drain-usage": {"task": "usage.tasks.drain_usage", "schedule": USAGE_DRAIN_SECONDS},
    "roll-up-usage": {"task": "usage.tasks.roll_up_usage", "schedule": USAGE_ROLLUP_SECONDS},
    # Starts the batch feeder if none runs (a killed one is replaced once its lease expires).
    "feed-batches": {"task": "batches.tasks.feed_batches", "schedule": BATCH_FEED_SECONDS,
                     "options": {"expires": BATCH_FEED_SECONDS}},
}
# The batch feeder runs for as long as batches do: in its own worker (`celery worker -Q batches`), so it
# never holds up the periodic tasks.
CELERY_TASK_ROUTES = {"batches.tasks.feed_batches": {"queue": "batches"}}

# --- Ollama nodes and model defaults ----------------------------------------------------------
# Seeds the Node table; nodes are then edited in the admin.
OLLAMA_NODES = envlist("OLLAMA_NODES")
# OpenAI-compatible servers (llama-server, vLLM, SGLang, TGI, LM Studio, another Gatehouse), seeded the same way.
OPENAI_NODES = envlist("OPENAI_NODES")
DEFAULT_MODEL_CONCURRENCY = envint("DEFAULT_MODEL_CONCURRENCY", 4, minimum=1)
DEFAULT_MAX_QUEUE = envint("DEFAULT_MAX_QUEUE", 64, minimum=0)
DEFAULT_CONTEXT_LENGTH = envint("DEFAULT_CONTEXT_LENGTH", 8192, minimum=256)
# keep_alive Gatehouse sends with every request, so Ollama never unloads on its own schedule.
OLLAMA_KEEP_ALIVE = envstr("OLLAMA_KEEP_ALIVE", "30m")
OLLAMA_CONNECT_TIMEOUT = envfloat("OLLAMA_CONNECT_TIMEOUT", 5.0)
# Generous: a cold load of a big model can take minutes, and tokens may be slow.
OLLAMA_READ_TIMEOUT = envfloat("OLLAMA_READ_TIMEOUT", 600.0)

# The API's authenticator: an async function of the request returning the caller (inference/caller.py).
API_AUTHENTICATOR = "apiaccess.auth.authenticate"

# --- Scheduling (inference/scheduler/slots.py, inference/scheduler/swapper.py; docs/architecture.md) ----------------
# Off: every call goes straight to a node with no bound (for comparison in bench/scheduling.py).
QUEUE_ENABLED = envbool("QUEUE_ENABLED", True)
# A slot is a lease its web process renews every third of this; a killed process frees it after this.
SLOT_LEASE_SECONDS = envfloat("SLOT_LEASE_SECONDS", 15.0)
QUEUE_TIMEOUT_SECONDS = envfloat("QUEUE_TIMEOUT_SECONDS", 600.0)
# Streams get a `: keep-alive` comment this often while queued or while the model is silent.
SSE_KEEPALIVE_SECONDS = envfloat("SSE_KEEPALIVE_SECONDS", 5.0)
# Upstream calls one request may open (n x prompts); each takes a slot.
MAX_UPSTREAM_CALLS_PER_REQUEST = envint("MAX_UPSTREAM_CALLS_PER_REQUEST", 16, minimum=1)
# A batch request gets a turn ahead of interactive ones once it has waited this long.
BATCH_MAX_WAIT_SECONDS = envfloat("BATCH_MAX_WAIT_SECONDS", 120.0)
# The longest a request waits for its model to be loaded while other models keep a node busy.
SWAP_MAX_WAIT_SECONDS = envfloat("SWAP_MAX_WAIT_SECONDS", 60.0)
# How often the swap actor reads every node's /api/ps (health and memory).
NODE_PS_POLL_SECONDS = envfloat("NODE_PS_POLL_SECONDS", 2.0)
# Redis calls on the request path give up after this, so an outage is a quick 503, not a hang.
REDIS_SOCKET_TIMEOUT = envfloat("REDIS_SOCKET_TIMEOUT", 1.0)
# Redis connections one web process opens at most; a burst beyond them waits its turn in the process
# (up to REDIS_POOL_WAIT_SECONDS) instead of failing.
REDIS_MAX_CONNECTIONS = envint("REDIS_MAX_CONNECTIONS", 64, minimum=2)
REDIS_POOL_WAIT_SECONDS = envfloat("REDIS_POOL_WAIT_SECONDS", 10.0)
# After Redis restarts (its run id changes), no slot is granted for this long: every web process first
# puts back the calls it is still running, so the concurrency bound counts them.
REDIS_RESTART_GRACE_SECONDS = envfloat("REDIS_RESTART_GRACE_SECONDS", 3.0)

# --- API --------------------------------------------------------------------------------------
MAX_REQUEST_BODY_BYTES = envint("MAX_REQUEST_BODY_BYTES", 20 * 1024 * 1024, minimum=1024)
# Bodies at least this large are parsed in a separate process (inference/openai_api/parsing.py), PARSE_WORKERS at a time.
PARSE_OFFLOAD_BYTES = envint("PARSE_OFFLOAD_BYTES", 256 * 1024, minimum=0)
PARSE_WORKERS = envint("PARSE_WORKERS", 2, minimum=1)
# One catalogue sync at a time across all processes (a Redis lock): a sync that finds another running
# waits up to this long for it (make run's start), then gives up; the periodic task does not wait.
CATALOGUE_SYNC_WAIT_SECONDS = envint("CATALOGUE_SYNC_WAIT_SECONDS", 60, minimum=0)
# The web process (portal/web.py): pending connections the kernel queues (daphne's default is 50, which
# resets clients under a burst of a few hundred), and how long a connection may send nothing at all.
WEB_LISTEN_BACKLOG = envint("WEB_LISTEN_BACKLOG", 1024, minimum=1)
WEB_IDLE_TIMEOUT_SECONDS = envint("WEB_IDLE_TIMEOUT_SECONDS", 60, minimum=1)
# On SIGTERM or Ctrl-C the web process stops listening and lets the requests it is answering finish,
# for up to this long, before it cancels what still runs (portal/web.py DrainingServer).
WEB_DRAIN_SECONDS = envfloat("WEB_DRAIN_SECONDS", 30.0)
# Django's own cap on non-file bodies must not cut our API bodies short before we can answer 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Files for the Batch API (batches/files.py): JSONL of requests, each checked before it is accepted.
# OpenAI's own limits per file; the quota is on the bytes one person keeps stored (0 = no quota).
BATCH_FILE_MAX_BYTES = envint("BATCH_FILE_MAX_BYTES", 200 * 1024 * 1024, minimum=1)
BATCH_FILE_MAX_LINES = envint("BATCH_FILE_MAX_LINES", 50_000, minimum=1)
BATCH_FILE_QUOTA_BYTES = envint("BATCH_FILE_QUOTA_BYTES", 1024 * 1024 * 1024, minimum=0)
BATCH_FILES_DIR = Path(envstr("BATCH_FILES_DIR", str(RUN_DIR / "batch-files")))
# With a bucket named, batch files live in S3-compatible storage (django-storages) instead of BATCH_FILES_DIR.
BATCH_FILES_S3_BUCKET = envstr("BATCH_FILES_S3_BUCKET", "").strip()
BATCH_FILES_S3_ENDPOINT_URL = envstr("BATCH_FILES_S3_ENDPOINT_URL", "").strip()  # empty: AWS
BATCH_FILES_S3_REGION = envstr("BATCH_FILES_S3_REGION", "").strip()
BATCH_FILES_S3_ACCESS_KEY_ID = envstr("BATCH_FILES_S3_ACCESS_KEY_ID", "").strip()
BATCH_FILES_S3_SECRET_ACCESS_KEY = envsecret("BATCH_FILES_S3_SECRET_ACCESS_KEY")
BATCH_FILES_S3_PREFIX = envstr("BATCH_FILES_S3_PREFIX", "batch-files")
# Batch files go through Django's storage API under the "batch_files" alias (batches/storage.py), so
# where they live is decided here alone. The other two entries are Django's defaults.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "batch_files": batch_files_storage(
        directory=BATCH_FILES_DIR, s3_bucket=BATCH_FILES_S3_BUCKET, s3_endpoint_url=BATCH_FILES_S3_ENDPOINT_URL,
        s3_region=BATCH_FILES_S3_REGION, s3_access_key_id=BATCH_FILES_S3_ACCESS_KEY_ID,
        s3_secret_access_key=BATCH_FILES_S3_SECRET_ACCESS_KEY, s3_prefix=BATCH_FILES_S3_PREFIX),
}
# A file upload larger than this is written to a temporary file while it is parsed, not kept in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# A web process trusts a verified key this long, but re-reads it sooner when any key is revoked or
# changed: it checks Redis for such changes every API_KEY_REVOCATION_CHECK_SECONDS.
API_KEY_CACHE_SECONDS = envfloat("API_KEY_CACHE_SECONDS", 60.0)
API_KEY_REVOCATION_CHECK_SECONDS = envfloat("API_KEY_REVOCATION_CHECK_SECONDS", 1.0)
# Active (not revoked, not expired) keys one person may hold.
# Rate limits and token quotas (inference/accounting/ratelimit.py). Defaults for every person (over all of their
# keys) and for every key; overrides per person and per key in the admin. 0 = no limit.
RATE_LIMITS_ENABLED = envbool("RATE_LIMITS_ENABLED", True)
PERSON_LIMITS = {
    "requests_per_minute": envint("LIMIT_REQUESTS_PER_MINUTE", 600, minimum=0),
    "tokens_per_minute": envint("LIMIT_TOKENS_PER_MINUTE", 1_000_000, minimum=0),
    "concurrent_requests": envint("LIMIT_CONCURRENT_REQUESTS", 0, minimum=0),
    "tokens_per_day": envint("LIMIT_TOKENS_PER_DAY", 0, minimum=0),
    "tokens_per_month": envint("LIMIT_TOKENS_PER_MONTH", 0, minimum=0),
}
KEY_LIMITS = {
    "requests_per_minute": envint("KEY_LIMIT_REQUESTS_PER_MINUTE", 0, minimum=0),
    "tokens_per_minute": envint("KEY_LIMIT_TOKENS_PER_MINUTE", 0, minimum=0),
    "concurrent_requests": envint("KEY_LIMIT_CONCURRENT_REQUESTS", 0, minimum=0),
    "tokens_per_day": envint("KEY_LIMIT_TOKENS_PER_DAY", 0, minimum=0),
    "tokens_per_month": envint("KEY_LIMIT_TOKENS_PER_MONTH", 0, minimum=0),
}
# A request's concurrent place is a lease its web process renews while it runs; a killed process's
# places come back after this long.
CONCURRENT_REQUEST_LEASE_SECONDS = envfloat("CONCURRENT_REQUEST_LEASE_SECONDS", 60.0)

# Usage records (inference/accounting/usage.py -> Redis stream -> usage/drain.py -> database).
# /metrics is readable by staff, and by a scraper sending "Authorization: Bearer <METRICS_TOKEN>".
METRICS_TOKEN = envsecret("METRICS_TOKEN") or ""
USAGE_RECORDS_ENABLED = envbool("USAGE_RECORDS_ENABLED", True)
USAGE_STREAM_MAX_LENGTH = envint("USAGE_STREAM_MAX_LENGTH", 5_000_000, minimum=1000)

MAX_API_KEYS_PER_USER = envint("MAX_API_KEYS_PER_USER", 10, minimum=1)

REST_FRAMEWORK = {
    # Bearer first: its WWW-Authenticate header is what makes DRF answer 401 rather than 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apiaccess.keyapi.auth.BearerKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "apiaccess.keyapi.errors.json_exception_handler",
}

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL = envstr("LOG_LEVEL", "INFO").strip().upper()
if LOG_LEVEL not in _LOG_LEVELS:
    raise ImproperlyConfigured(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {LOG_LEVEL!r}")
# Lines about routine work that repeats all day: shown at LOG_LEVEL=DEBUG only.
_ROUTINE = "DEBUG" if LOG_LEVEL == "DEBUG" else max("WARNING", LOG_LEVEL, key=_LOG_LEVELS.index)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"quiet_refusals": {"()": "portal.logfilters.QuietRefusals"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # One line per refused API request (the access log's): not Django's "Service Unavailable" as well.
        "django.request": {"level": "ERROR", "filters": ["quiet_refusals"]},
        # httpx logs every request at INFO: the scheduler polls each node's /api/ps every few seconds.
        "httpx": {"level": "WARNING"},
        # The worker's "Task ... received" and "... succeeded", and beat's "Sending due task", for every
        # periodic task (usage drained every 10 s, catalogue every 30 s...): two dozen lines a minute
        # from an idle worker. The tasks' own warnings and errors still show.
        "celery.worker.strategy": {"level": _ROUTINE},
        "celery.app.trace": {"level": _ROUTINE},
        "celery.beat": {"level": _ROUTINE},
    },
}
