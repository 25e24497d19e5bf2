"""Settings, read from the environment.

With nothing set, the platform runs on its embedded default: SQLite, local-memory cache, in-memory channel
layer, Celery tasks executed in-process. `DATABASE_URL` and `REDIS_URL` switch it to the full stack.
`DJANGO_ENV=production` refuses insecure configuration at start-up (see `_refuse_insecure_production`).
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A developer's .env, unless told not to (the test settings say so: tests see only the environment they set).
if (BASE_DIR / ".env").exists() and env.bool("DJANGO_READ_DOT_ENV", default=True):
    environ.Env.read_env(BASE_DIR / ".env")

# litellm: use the bundled price map (no download) and never ask a hub for tokenizers.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", env("LITELLM_LOCAL_MODEL_COST_MAP", default="True"))
os.environ.setdefault("HF_HUB_OFFLINE", env("HF_HUB_OFFLINE", default="1"))

DJANGO_ENV = env("DJANGO_ENV", default="development")
PRODUCTION = DJANGO_ENV == "production"

INSECURE_KEY_MARKERS = ("django-insecure", "change-me", "changeme", "secret", "dev-only")
DEV_SECRET_KEY = "django-insecure-dev-only-key-do-not-use-in-production-0123456789"

SECRET_KEY = env("SECRET_KEY", default="" if PRODUCTION else DEV_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])


def _refuse_insecure_production() -> None:
    problems = []
    if not SECRET_KEY:
        problems.append("SECRET_KEY is not set")
    elif len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or any(m in SECRET_KEY.lower() for m in INSECURE_KEY_MARKERS):
        problems.append("SECRET_KEY is insecure (use at least 50 random characters)")
    if DEBUG:
        problems.append("DEBUG is on")
    if not ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS is empty")
    elif any("*" in host for host in ALLOWED_HOSTS):
        problems.append("ALLOWED_HOSTS contains '*' (name the hosts this site answers to)")
    if problems:
        raise ImproperlyConfigured("Refusing to start in production: " + "; ".join(problems) + ".")


if PRODUCTION:
    _refuse_insecure_production()

INSTALLED_APPS = [
    "daphne",
    "agent_platform.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "simple_history",
    "django_prometheus",
    "agent_platform.accounts",
    "agent_platform.observability",
    "agent_platform.llm",
    "traces",
    "costs",
    "prompts",
    "agents",
    "experiments",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "agent_platform.api.middleware.RequestIdMiddleware",
    "agent_platform.api.middleware.InputGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "agent_platform.api.middleware.SessionCallerMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "agent_platform.api.middleware.ApiExceptionMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "agent_platform.urls"
WSGI_APPLICATION = "agent_platform.wsgi.application"
ASGI_APPLICATION = "agent_platform.asgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# PostgreSQL: a connection pool per process (psycopg_pool through Django's OPTIONS["pool"]). Under ASGI every request
# runs in its own thread, so persistent connections (CONN_MAX_AGE > 0) grow with concurrency until PostgreSQL refuses
# ("too many clients already"); a pool bounds each process at DB_POOL_MAX_SIZE and makes a request wait up to
# DB_POOL_TIMEOUT seconds for a free connection, then answer 503 SERVICE_UNAVAILABLE. DB_POOL_MAX_SIZE=0 turns the
# pool off (persistent connections with CONN_MAX_AGE, e.g. behind PgBouncer). Sizing rule: see the README.
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=10)
DB_POOL_ENABLED = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_MAX_SIZE > 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DB_POOL_ENABLED:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django returns the connection to the pool after each request
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(env.int("DB_POOL_MIN_SIZE", default=1), DB_POOL_MAX_SIZE),
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
            # A connection idle this long is closed (down to min_size), so a quiet process holds few sessions.
            "max_idle": env.float("DB_POOL_MAX_IDLE", default=300.0),
        }
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
else:
    # SQLite under concurrent writers (in-process runs, daphne threads): wait rather than fail.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=None)}
USING_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, Celery --------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
CACHE_KEY_PREFIX = env("CACHE_KEY_PREFIX", default="ap")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    # channels-redis's pub/sub layer: a group message is one PUBLISH, pushed to the subscribed server process, so
    # a streamed token is not a Lua script plus a blocking pop per message. It keeps no backlog: a socket that
    # misses an event sees the gap in its sequence numbers and fetches it from the stored run (see agents.consumers).
    # CHANNEL_LAYER_BACKEND=core selects the list-based layer (with capacity and expiry) instead.
    layer_config = {"hosts": [REDIS_URL], "prefix": env("CHANNEL_LAYER_PREFIX", default=f"{CACHE_KEY_PREFIX}:asgi")}
    layer_choice = env("CHANNEL_LAYER_BACKEND", default="pubsub")
    if layer_choice == "core":
        layer_backend = "channels_redis.core.RedisChannelLayer"
        layer_config.update(capacity=env.int("CHANNEL_LAYER_CAPACITY", default=5000), expiry=60)
    elif layer_choice == "pubsub":
        layer_backend = "channels_redis.pubsub.RedisPubSubChannelLayer"
    else:
        raise ImproperlyConfigured(f'CHANNEL_LAYER_BACKEND must be "pubsub" or "core", not {layer_choice!r}.')
    CHANNEL_LAYERS = {"default": {"BACKEND": layer_backend, "CONFIG": layer_config}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": CACHE_KEY_PREFIX}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache is optional for answering (agent_platform.cache_safe): while it is unreachable reads miss, writes are
# skipped and throttling counts per process; it is tried again every CACHE_RETRY_SECONDS.
CACHE_RETRY_SECONDS = env.float("CACHE_RETRY_SECONDS", default=5.0)
# A 503 SERVICE_UNAVAILABLE (cache, broker or database down) tells the client to retry after this many seconds.
SERVICE_RETRY_AFTER_SECONDS = env.int("SERVICE_RETRY_AFTER_SECONDS", default=5)

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
# Without a broker, agent work runs in-process: tasks execute eagerly where they are sent.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=CELERY_BROKER_URL == "memory://")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="celery")
# The reaper of stale runs and the dispatch relay have their own queue (agent_platform.celery routes them), so a
# backlog of runs cannot starve them: empty means `maintenance`, or `<CELERY_QUEUE>-maintenance` when CELERY_QUEUE
# is not `celery`. A worker must consume both: `celery -A agent_platform worker -Q celery,maintenance`.
CELERY_MAINTENANCE_QUEUE = env("CELERY_MAINTENANCE_QUEUE", default="")
# A run task that cannot reach the database or the broker before it claims its run retries (exponential backoff
# with jitter, capped at AGENT_RUN_RETRY_BACKOFF_MAX_SECONDS) up to AGENT_RUN_RETRY_MAX times, instead of being
# acknowledged; after that the dispatch relay sends the run again.
AGENT_RUN_RETRY_MAX = env.int("AGENT_RUN_RETRY_MAX", default=10)
AGENT_RUN_RETRY_BACKOFF_MAX_SECONDS = env.int("AGENT_RUN_RETRY_BACKOFF_MAX_SECONDS", default=30)
# The dispatch outbox (Run.dispatched_at): every AGENT_RUN_DISPATCH_RELAY_SECONDS the relay (beat, maintenance
# queue) sends again each run still queued and unclaimed AGENT_RUN_DISPATCH_STALE_SECONDS after it was last sent,
# and a run whose send failed (broker down) AGENT_RUN_DISPATCH_GRACE_SECONDS after it was created.
AGENT_RUN_DISPATCH_RELAY_SECONDS = env.float("AGENT_RUN_DISPATCH_RELAY_SECONDS", default=10.0)
AGENT_RUN_DISPATCH_STALE_SECONDS = env.float("AGENT_RUN_DISPATCH_STALE_SECONDS", default=30.0)
AGENT_RUN_DISPATCH_GRACE_SECONDS = env.float("AGENT_RUN_DISPATCH_GRACE_SECONDS", default=5.0)
AGENT_RUN_REAPER_SECONDS = env.float("AGENT_RUN_REAPER_SECONDS", default=30.0)
# A running run writes a heartbeat this often (and notices a cancel); the reaper treats a run whose heartbeat is
# older than AGENT_RUN_STALE_SECONDS as lost, re-queues it, and fails it after AGENT_RUN_MAX_ATTEMPTS attempts.
AGENT_RUN_HEARTBEAT_SECONDS = env.float("AGENT_RUN_HEARTBEAT_SECONDS", default=2.0)
AGENT_RUN_STALE_SECONDS = env.float("AGENT_RUN_STALE_SECONDS", default=60.0)
AGENT_RUN_MAX_ATTEMPTS = env.int("AGENT_RUN_MAX_ATTEMPTS", default=2)
AGENT_RUN_WAIT_SECONDS = env.float("AGENT_RUN_WAIT_SECONDS", default=120.0)
# On PostgreSQL a run's hot-path bookkeeping (create, claim, heartbeats, streamed events) commits without waiting
# for the WAL flush (~4 ms per commit here); outcomes always commit durably.
AGENT_RUN_ASYNC_COMMIT = env.bool("AGENT_RUN_ASYNC_COMMIT", default=True)
# The longest retry delay any task uses; the visibility timeout must exceed it, or Redis redelivers a task
# that is merely waiting for its retry.
CELERY_MAX_RETRY_DELAY = 600
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3 * 3600}
CELERY_RESULT_EXPIRES = 3600
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every database connection before and after each task unless this is set: a new
# PostgreSQL connection (~4 ms) per task. With it, connections live across tasks like across web requests:
# agent_platform.celery applies CONN_MAX_AGE and the health checks around each task instead.
CELERY_DB_REUSE_MAX = 1_000_000

# --- Auth, admin ------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sessions live in the database, never only in the cache: a cache outage must not log everyone out.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
LOGIN_URL = "/admin/login/"
# A user with a confirmed OTP device always needs a one-time password, on every way in (admin login, JWT token,
# API session, minting API keys); with ADMIN_REQUIRE_OTP (on in production) so does every staff user.
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=PRODUCTION)
# The JWT claim that says the token was issued after a one-time password was checked.
JWT_OTP_CLAIM = "otp"
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="Agent Platform")
API_KEY_PREFIX = "ap"

# --- REST API ----------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agent_platform.api.authentication.ApiKeyAuthentication",
        "agent_platform.api.authentication.JWTAuthentication",
        "agent_platform.api.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "agent_platform.api.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "agent_platform.api.throttling.UserThrottle",
        "agent_platform.api.throttling.AnonThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env("THROTTLE_USER_RATE", default="6000/min"),
        "anon": env("THROTTLE_ANON_RATE", default="120/min"),
    },
    "EXCEPTION_HANDLER": "agent_platform.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "agent_platform.api.schema.PlatformAutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Platform API",
    "DESCRIPTION": "Agents, prompts, traces, costs and experiments. Errors use one envelope: "
    '{"error": {"code", "message", "details", "request_id", "timestamp"}}.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed drf-spectacular-sidecar package: the docs work offline, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": __import__("datetime").timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=5)),
    "REFRESH_TOKEN_LIFETIME": __import__("datetime").timedelta(days=env.int("JWT_REFRESH_DAYS", default=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "SIGNING_KEY": env("JWT_SIGNING_KEY", default=SECRET_KEY),
}

# --- Input limits (agent_platform.api.input_guard) -------------------------------------------------------------
# A body over this many bytes is answered 413 REQUEST_TOO_LARGE before it is read (Django's own limit, also
# applied to JSON bodies under /api/).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
# JSON bodies nested deeper than this are answered 422 INPUT_TOO_DEEP.
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=64)
# A failed CSRF check answers in the error envelope (CSRF_FAILED) under /api/, with Django's page elsewhere.
CSRF_FAILURE_VIEW = "agent_platform.api.views.csrf_failure"

# --- Static files -------------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (production) ------------------------------------------------------------------------------------
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^health/"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env.bool("BEHIND_TLS_PROXY", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Provider credentials are encrypted with these Fernet keys (comma-separated, newest first). Production must
# set them: they are deliberately not derived from SECRET_KEY there.
CREDENTIALS_ENCRYPTION_KEYS = env.list("CREDENTIALS_ENCRYPTION_KEYS", default=[])
if PRODUCTION and not CREDENTIALS_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("Refusing to start in production: CREDENTIALS_ENCRYPTION_KEYS is not set.")


def _refuse_malformed_encryption_keys() -> None:
    # A bad key would otherwise surface only when the first credential is encrypted or read. The message names the
    # key's position, never the key.
    from cryptography.fernet import Fernet

    for position, key in enumerate(CREDENTIALS_ENCRYPTION_KEYS, start=1):
        if not key.strip():
            continue
        try:
            Fernet(key.strip().encode())
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"Refusing to start{' in production' if PRODUCTION else ''}: CREDENTIALS_ENCRYPTION_KEYS key "
                f"#{position} is not a valid Fernet key (32 url-safe base64-encoded bytes; make one with "
                '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`).'
            ) from None


_refuse_malformed_encryption_keys()

# --- Observability ------------------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "agent_platform.observability.logging.make_formatter", "fmt": LOG_FORMAT}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "LiteLLM": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}

SENTRY_DSN = env("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=DJANGO_ENV,
        send_default_pii=False,
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# /metrics: open in development; in production only to a bearer token (METRICS_TOKEN) or to clients inside
# METRICS_ALLOWED_NETWORKS (CIDR list, default loopback). PROMETHEUS_MULTIPROC_DIR (read by prometheus_client from
# the environment) sums the values of every web and worker process.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list(
    "METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"] if PRODUCTION else []
)


def _refuse_malformed_networks() -> None:
    import ipaddress

    for network in METRICS_ALLOWED_NETWORKS:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"Refusing to start: METRICS_ALLOWED_NETWORKS entry {network!r} is not a network (e.g. 10.0.0.0/8)."
            ) from None


_refuse_malformed_networks()

TRACE_RETENTION_DAYS = env.int("TRACE_RETENTION_DAYS", default=30)
# How often buffered trace and cost records are written by a background thread (s); 0: only at request/task end.
OBSERVER_FLUSH_SECONDS = max(env.float("OBSERVER_FLUSH_SECONDS", default=2.0), 0.0)
OTEL_EXPORTER_OTLP_ENDPOINT = env("OTEL_EXPORTER_OTLP_ENDPOINT", default="")

# Budget alerts and other mail.
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="agent-platform@localhost")

# --- Tunables of the apps (the one place they are read; README "Configuration" says what each does) -----------
# Prompt store: render limits (per text or chat message), the fetch cache, labels created protected.
PROMPT_RENDER_MAX_CHARS = env.int("PROMPT_RENDER_MAX_CHARS", default=100_000)
PROMPT_RENDER_TIMEOUT_MS = env.float("PROMPT_RENDER_TIMEOUT_MS", default=1000.0)
PROMPT_RENDER_MAX_RANGE = env.int("PROMPT_RENDER_MAX_RANGE", default=10_000)
PROMPT_RENDER_MAX_ITERATIONS = env.int("PROMPT_RENDER_MAX_ITERATIONS", default=200_000)
PROMPT_CACHE_STAMP_TTL_MS = env.float("PROMPT_CACHE_STAMP_TTL_MS", default=0.0)
PROMPT_PROTECTED_LABELS = env.list("PROMPT_PROTECTED_LABELS", default=["production"])

# Experiments: background thread on the embedded default, resume after a silent heartbeat, limits.
EXPERIMENTS_BACKGROUND = env.bool("EXPERIMENTS_BACKGROUND", default=True)
EXPERIMENTS_HEARTBEAT_TIMEOUT = env.float("EXPERIMENTS_HEARTBEAT_TIMEOUT", default=60.0)
EXPERIMENTS_ENDPOINT_CONCURRENCY = env.int("EXPERIMENTS_ENDPOINT_CONCURRENCY", default=64)
EXPERIMENTS_DATASET_MAX_ITEMS = env.int("EXPERIMENTS_DATASET_MAX_ITEMS", default=100_000)
EXPERIMENTS_IMPORT_MAX_BYTES = env.int("EXPERIMENTS_IMPORT_MAX_BYTES", default=50 * 1024 * 1024)

# LLM layer: timeouts and retries of implicit endpoints, backoff, response cache, input cap, endpoint refresh.
LLM_DEFAULT_TIMEOUT = env.float("LLM_DEFAULT_TIMEOUT", default=60.0)
LLM_DEFAULT_MAX_RETRIES = env.int("LLM_DEFAULT_MAX_RETRIES", default=2)
LLM_RETRY_BASE_DELAY = env.float("LLM_RETRY_BASE_DELAY", default=0.5)
LLM_RETRY_MAX_DELAY = env.float("LLM_RETRY_MAX_DELAY", default=8.0)
LLM_MAX_RETRY_AFTER = env.float("LLM_MAX_RETRY_AFTER", default=30.0)
LLM_CACHE_TTL = env.int("LLM_CACHE_TTL", default=3600)
LLM_MAX_INPUT_CHARS = env.int("LLM_MAX_INPUT_CHARS", default=2_000_000)
LLM_ENDPOINT_CACHE_SECONDS = env.float("LLM_ENDPOINT_CACHE_SECONDS", default=5.0)
# Where the mock provider (mock/...) keeps its scripts and call logs: `memory` (this process) or `cache` (the shared
# cache, so that a worker process answers what another process scripted; the test suite's choice on the full stack).
LLM_MOCK_STORE = env("LLM_MOCK_STORE", default="memory")
if LLM_MOCK_STORE not in ("memory", "cache"):
    raise ImproperlyConfigured(f'LLM_MOCK_STORE must be "memory" or "cache", not {LLM_MOCK_STORE!r}.')
