"""Pier settings: one module, driven by environment variables.

Every variable is listed in the README. With DEBUG off (the default) the settings are
production-safe: SECRET_KEY is required, cookies are secure, HSTS is on. The launcher
(`portal.launcher`) sets DEBUG=1 and the local defaults for a developer's run.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Templates and static files: beside the code in a checkout; in <prefix>/share/pier/ when Pier was
# installed from its wheel (pyproject.toml's data-files).
ASSETS_DIR = BASE_DIR if (BASE_DIR / "templates").is_dir() else Path(sys.prefix) / "share" / "pier"
STATE_DIR = Path(os.environ.get("PIER_STATE_DIR", BASE_DIR / ".pier"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


DEBUG = env_bool("DEBUG")
TESTING = env_bool("PIER_TESTING")

# Secrets are at least this many bytes (UTF-8): 256 bits for HMAC keys.
MIN_SECRET_BYTES = 32


def require_long_secret(name: str, value: str) -> None:
    length = len(value.encode("utf-8", "surrogatepass"))
    if length < MIN_SECRET_BYTES:
        raise ImproperlyConfigured(
            f"{name} is {length} bytes long; it must be at least {MIN_SECRET_BYTES} bytes "
            f"(a long random string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
        )


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-local-development-key-not-for-production-use-0123456789"
    else:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
elif not DEBUG:
    require_long_secret("SECRET_KEY", SECRET_KEY)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if (DEBUG or TESTING) else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "portal.errors.csrf_failure"

# --- Applications -------------------------------------------------------------------------
# django-tenants places whole apps in the public schema (SHARED_APPS) or in every tenant
# schema (TENANT_APPS). contenttypes and auth live in public only: tenant tables reference
# public.auth_user through the search_path "<tenant>, public".
SHARED_APPS = [
    "django_tenants",
    "portal",
    "tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",  # failed sign-in attempts (public schema, its own migrations)
]
TENANT_APPS = [
    "tenants.projects",
    "sessions",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
PUBLIC_SCHEMA_NAME = "public"
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# One `SET search_path` per schema switch instead of one per cursor (the middleware switches,
# at most once, per request).
TENANT_LIMIT_SET_CALLS = True

MIDDLEWARE = [
    "portal.request_id.RequestIdMiddleware",
    # Outside everything else, so a refusal from any layer below is recorded.
    "portal.audit.RefusedAttemptMiddleware",
    # NUL bytes, lone surrogates, over-long values: refused before anything looks them up.
    "portal.input_guard.InputGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.tenancy.TenantPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a blocked sign-in into portal.throttling's answer
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [ASSETS_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.pier",
            ],
            "builtins": ["portal.templatetags.pier"],  # `when`: times with their zone
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# The launcher starts an embedded PostgreSQL and exports DATABASE_URL; settings never start it.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Run Pier through `make run` / `make test` (which start an "
        "embedded PostgreSQL), or point DATABASE_URL at a PostgreSQL server."
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (tenant resolution version keys, fault switches) -------------------------------
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    _cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
elif CACHE_URL.startswith("file://"):
    _cache = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": CACHE_URL[7:]}
elif CACHE_URL.startswith("locmem://") or (not CACHE_URL and TESTING):
    _cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pier"}
elif not CACHE_URL and not DEBUG:
    # Tenant changes (a suspension) reach other processes through this cache: a per-pod cache
    # would leave the other pods serving a suspended tenant.
    raise ImproperlyConfigured("CACHE_URL must be set when DEBUG is off (e.g. redis://redis:6379/1).")
elif not CACHE_URL:
    # Shared between the web server and the workers of a local run without any server.
    _cache = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(STATE_DIR / "cache"),
    }
else:
    raise ImproperlyConfigured(f"CACHE_URL scheme not supported: {CACHE_URL!r}")
_cache["KEY_PREFIX"] = "pier"
CACHES = {"default": _cache}

# --- Auth ---------------------------------------------------------------------------------
# Axes first: while a sign-in is blocked it refuses before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# --- Security -----------------------------------------------------------------------------
# OpenShift's router terminates TLS and sets X-Forwarded-Proto.
if env_bool("PIER_BEHIND_TLS_PROXY", not DEBUG and not TESTING):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_COOKIES = env_bool("PIER_SECURE_COOKIES", not DEBUG and not TESTING)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env_bool("PIER_SSL_REDIRECT", not DEBUG and not TESTING)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("PIER_HSTS_SECONDS", 0 if (DEBUG or TESTING) else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("PIER_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# --- Sign-in throttling (django-axes) -------------------------------------------------------
# Failed password sign-ins (the /login form, the admin's, HTTP Basic on the API) are counted per
# account *and* address, and per address. Past a limit, sign-ins are refused for a cool-off,
# then allowed again: never a lockout by account alone, which anyone could use to lock staff out.
# The account's owner still signs in from another address.
PIER_SIGNIN_COOLOFF_MINUTES = env_int("PIER_SIGNIN_COOLOFF_MINUTES", 15)
PIER_SIGNIN_LIMIT_PER_ACCOUNT_AND_ADDRESS = env_int("PIER_SIGNIN_LIMIT_PER_ACCOUNT_AND_ADDRESS", 5)
PIER_SIGNIN_LIMIT_PER_ADDRESS = env_int("PIER_SIGNIN_LIMIT_PER_ADDRESS", 20)
# The client address: REMOTE_ADDR, or, behind this many trusted proxies that each append to
# X-Forwarded-For (OpenShift's router does), the address the outermost one saw. Behind the TLS
# proxy by default: otherwise every client would share the router's address.
PIER_TRUSTED_PROXY_COUNT = env_int(
    "PIER_TRUSTED_PROXY_COUNT", 1 if env_bool("PIER_BEHIND_TLS_PROXY", not DEBUG and not TESTING) else 0
)
AXES_HANDLER = "portal.throttling.SignInAttemptHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
# The per-parameter limits above are applied by the handler; this is its common scale.
AXES_FAILURE_LIMIT = PIER_SIGNIN_LIMIT_PER_ACCOUNT_AND_ADDRESS
AXES_COOLOFF_TIME = timedelta(minutes=PIER_SIGNIN_COOLOFF_MINUTES)
# A refused attempt during the cool-off does not prolong it, so the wait announced is the wait.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "portal.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "portal.throttling.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are in Pier's audit trail already
AXES_VERBOSE = False

# --- Internationalization / static ---------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [ASSETS_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if (DEBUG or TESTING)
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING

# --- REST framework -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Access keys (Bearer) first; Basic's WWW-Authenticate header turns "not authenticated"
        # into a 401.
        "tenants.projects.authentication.AccessKeyAuthentication",
        "portal.throttling.ThrottledBasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "portal.openapi.PierAutoSchema",  # the shared error responses (portal/openapi.py)
    "EXCEPTION_HANDLER": "portal.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only: a cross-site HTML form cannot send it, so Basic credentials a browser cached
    # cannot be replayed by another site's form (CSRF).
    # Pier's parser adds a nesting limit and refuses NUL / lone surrogates (portal/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["portal.parsers.PierJSONParser", "portal.parsers.MergePatchJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pier API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TenantStatusEnum": "tenants.models.Tenant.Status",
        "JobStatusEnum": "tenants.models.ProvisioningJob.Status",
        "JobStepStatusEnum": "tenants.models.JobStep.Status",
        "ProjectStatusEnum": "tenants.projects.models.Project.Status",
        "TenantRoleEnum": "tenants.models.Role",
        "ProjectRoleEnum": "tenants.projects.models.ProjectRole",
        "ProjectGrantKindEnum": "tenants.projects.models.ProjectGrant.Kind",
    },
}

# --- Celery -------------------------------------------------------------------------------
# No broker configured: kombu's filesystem transport, which needs no server (local runs).
if not os.environ.get("CELERY_BROKER_URL") and not (DEBUG or TESTING):
    # The filesystem broker serves one machine; production pods need a shared broker that
    # redelivers what a killed worker had taken.
    raise ImproperlyConfigured("CELERY_BROKER_URL must be set when DEBUG is off (e.g. redis://redis:6379/0).")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "") or "filesystem://"
_broker_dir = STATE_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
    # kombu writes into these folders but does not make them: every process that sends or
    # receives (web, worker, beat, manage.py) makes them here, however it was started.
    for _folder in ("queue", "control", "processed"):
        try:
            (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
        except OSError as _exc:
            raise ImproperlyConfigured(
                f"CELERY_BROKER_URL is not set, so Celery keeps its messages in {_broker_dir}, which "
                f"cannot be created ({_exc.strerror}). Set PIER_STATE_DIR to a writable folder, or "
                "CELERY_BROKER_URL to a broker (e.g. redis://redis:6379/0)."
            ) from _exc
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300)}
# The longest retry countdown (portal/retries.py): below the broker's redelivery timeout, past
# which a waiting message would be delivered a second time.
PIER_MAX_BACKOFF = min(env_float("PIER_MAX_BACKOFF", 120.0),
                       CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600) / 2)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Beat's schedule file (override with `celery beat --schedule FILE`); its folder is made when beat
# starts (portal.celery.Scheduler), so beat starts the same with or without the launcher.
CELERY_BEAT_SCHEDULE_FILENAME = str(STATE_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULER = "portal.celery:Scheduler"

# --- Email --------------------------------------------------------------------------------
# Invitations by email are sent by the worker. With no EMAIL_HOST they are written to the
# worker's log instead (Django's console backend), which is what `make run` does.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Pier <pier@localhost>")
# Where people reach Pier (links in emails), e.g. https://pier.example.com; empty: no link.
PIER_BASE_URL = os.environ.get("PIER_BASE_URL", "").rstrip("/")
# An invitation email is sent again at most this often (seconds).
PIER_INVITATION_RESEND_INTERVAL = env_int("PIER_INVITATION_RESEND_INTERVAL", 60)

# --- Pier ---------------------------------------------------------------------------------
PIER_TENANT_CACHE_TTL = env_float("PIER_TENANT_CACHE_TTL", 2.0)
# Keep an incoming X-Request-ID only when a proxy in front sets it (and strips clients' own).
PIER_TRUST_REQUEST_ID = env_bool("PIER_TRUST_REQUEST_ID", False)
PIER_PROVISIONING_MAX_RETRIES = env_int("PIER_PROVISIONING_MAX_RETRIES", 5)
PIER_PROVISIONING_BACKOFF = env_float("PIER_PROVISIONING_BACKOFF", 2.0)
PIER_PROVISIONING_STUCK_AFTER = env_int("PIER_PROVISIONING_STUCK_AFTER", 300)
PIER_RECONCILE_INTERVAL = env_float("PIER_RECONCILE_INTERVAL", 60.0)
# Fault injection (tests, demos): off in production.
PIER_FAULT_INJECTION = env_bool("PIER_FAULT_INJECTION", DEBUG or TESTING)
# Platform defaults for new tenants (a tenant's own values override them).
PIER_DEFAULT_MAX_PROJECTS = env_int("PIER_DEFAULT_MAX_PROJECTS", 20)
PIER_DEFAULT_MAX_MEMBERS = env_int("PIER_DEFAULT_MAX_MEMBERS", 200)

# --- Kubernetes -----------------------------------------------------------------------------
PIER_KUBECONFIG = os.environ.get("KUBECONFIG", "")
PIER_KUBE_IN_CLUSTER = env_bool("PIER_KUBE_IN_CLUSTER", False)
# Set by the launcher when it started the Kubernetes API emulator: the UI says so.
PIER_KUBE_SIMULATED = env_bool("PIER_KUBE_SIMULATED", False)
# (connect, read) seconds for every call to the cluster.
PIER_KUBE_TIMEOUT = (env_float("PIER_KUBE_CONNECT_TIMEOUT", 3.0), env_float("PIER_KUBE_READ_TIMEOUT", 10.0))
# The same for the few calls made inside a web request (a key's token, a runner secret, a live log).
PIER_KUBE_REQUEST_TIMEOUT = (env_float("PIER_KUBE_REQUEST_CONNECT_TIMEOUT", 2.0),
                             env_float("PIER_KUBE_REQUEST_READ_TIMEOUT", 4.0))
# How a person is named in RoleBinding subjects: which user field, and the prefix the cluster's
# authenticator adds (OpenShift and OIDC setups prefix usernames, e.g. "oidc:").
PIER_KUBE_USERNAME_FIELD = os.environ.get("PIER_KUBE_USERNAME_FIELD", "username")
PIER_KUBE_USERNAME_PREFIX = os.environ.get("PIER_KUBE_USERNAME_PREFIX", "")
# The namespace Pier owns for access keys' ServiceAccounts (install_cluster_objects makes it):
# outside every project, so nobody who can run pods or make Secrets in a project can act as a key.
# No organization and project can be named into it (tenants.validators.validate_namespace_name).
PIER_KEYS_NAMESPACE = os.environ.get("PIER_KEYS_NAMESPACE", "pier-keys")
# --- Agentic sessions (sessions/) ----------------------------------------------------------
# The runner's image (runner/Containerfile builds the reference runner). Its container's resources
# are settings of the effective configuration (sessions.runner.*, defaults below).
PIER_RUNNER_IMAGE = os.environ.get("PIER_RUNNER_IMAGE", "ghcr.io/pier-dev/pier-runner:0.1")
# Seconds between two looks at running sessions' Jobs and pods (one label-selected LIST each).
PIER_SESSION_SYNC_SECONDS = env_float("PIER_SESSION_SYNC_SECONDS", 5.0)
# How often a running session's log is kept (read from its pod): what a pod deleted at its
# deadline takes with it is at most this much.
PIER_SESSION_LOG_SECONDS = env_float("PIER_SESSION_LOG_SECONDS", 30.0)
# A session's timeout when it names none, and the longest any session may ask for.
PIER_SESSION_DEFAULT_TIMEOUT = env_int("PIER_SESSION_DEFAULT_TIMEOUT", 1800)
PIER_SESSION_MAX_TIMEOUT = env_int("PIER_SESSION_MAX_TIMEOUT", 4 * 3600)
# How much of a runner's log Pier keeps (the end of it), and how long a runner pod the scheduler
# cannot place waits before its session fails (reason Unschedulable).
PIER_SESSION_LOG_BYTES = env_int("PIER_SESSION_LOG_BYTES", 1024 * 1024)
PIER_SESSION_UNSCHEDULABLE_SECONDS = env_int("PIER_SESSION_UNSCHEDULABLE_SECONDS", 300)
# Sessions running at once (Creating or Running); more wait as Pending, oldest first.
PIER_SESSION_RUNNING_PER_PROJECT = env_int("PIER_SESSION_RUNNING_PER_PROJECT", 3)
PIER_SESSION_RUNNING_PER_TENANT = env_int("PIER_SESSION_RUNNING_PER_TENANT", 10)
# A stop asks a running runner to end (SIGTERM, by lowering its pod's deadline) and waits this
# long for it (its pod's grace period is 30 s) before deleting its Job anyway.
PIER_SESSION_STOP_SECONDS = env_int("PIER_SESSION_STOP_SECONDS", 45)
PIER_SESSION_MAX_RETRIES = env_int("PIER_SESSION_MAX_RETRIES", 6)
PIER_SESSION_BACKOFF = env_float("PIER_SESSION_BACKOFF", 2.0)
# Namespaces allowed to reach every project (the ingress router's), comma-separated.
PIER_NETWORK_ALLOW_FROM = env_list("PIER_NETWORK_ALLOW_FROM", "openshift-ingress")
# Platform defaults of the effective project configuration (tenants/projects/config.py).
PIER_PROJECT_DEFAULTS = {
    "quota.requests.cpu": os.environ.get("PIER_QUOTA_REQUESTS_CPU", "4"),
    "quota.requests.memory": os.environ.get("PIER_QUOTA_REQUESTS_MEMORY", "8Gi"),
    "quota.limits.cpu": os.environ.get("PIER_QUOTA_LIMITS_CPU", "8"),
    "quota.limits.memory": os.environ.get("PIER_QUOTA_LIMITS_MEMORY", "16Gi"),
    "quota.pods": os.environ.get("PIER_QUOTA_PODS", "50"),
    "limits.default.cpu": os.environ.get("PIER_LIMIT_DEFAULT_CPU", "500m"),
    "limits.default.memory": os.environ.get("PIER_LIMIT_DEFAULT_MEMORY", "512Mi"),
    "limits.request.cpu": os.environ.get("PIER_LIMIT_REQUEST_CPU", "100m"),
    "limits.request.memory": os.environ.get("PIER_LIMIT_REQUEST_MEMORY", "128Mi"),
    "sessions.running": str(PIER_SESSION_RUNNING_PER_PROJECT),
    "sessions.max_timeout": str(PIER_SESSION_MAX_TIMEOUT),
    "sessions.runner.requests.cpu": os.environ.get("PIER_RUNNER_CPU_REQUEST", "100m"),
    "sessions.runner.requests.memory": os.environ.get("PIER_RUNNER_MEMORY_REQUEST", "256Mi"),
    "sessions.runner.limits.cpu": os.environ.get("PIER_RUNNER_CPU_LIMIT", "1"),
    "sessions.runner.limits.memory": os.environ.get("PIER_RUNNER_MEMORY_LIMIT", "1Gi"),
    "sessions.egress": env_list("PIER_RUNNER_EGRESS", "0.0.0.0/0:443"),
    "network.allow_from": PIER_NETWORK_ALLOW_FROM,
}
# Platform ceilings: no project (nor an organization's defaults) may go above these; staff may set
# other ceilings per organization. PIER_PROJECT_CEILINGS="quota.pods=100,quota.limits.cpu=32"
# replaces some of them.
PIER_PROJECT_CEILINGS = {
    "quota.requests.cpu": "64",
    "quota.requests.memory": "256Gi",
    "quota.limits.cpu": "128",
    "quota.limits.memory": "512Gi",
    "quota.pods": "1000",
    "limits.default.cpu": "16",
    "limits.default.memory": "64Gi",
    "limits.request.cpu": "16",
    "limits.request.memory": "64Gi",
    "sessions.running": str(env_int("PIER_SESSION_RUNNING_CEILING", 50)),
    "sessions.max_timeout": str(PIER_SESSION_MAX_TIMEOUT),
    "sessions.runner.requests.cpu": "8",
    "sessions.runner.requests.memory": "32Gi",
    "sessions.runner.limits.cpu": "16",
    "sessions.runner.limits.memory": "64Gi",
}
for _item in env_list("PIER_PROJECT_CEILINGS"):
    _key, _, _value = _item.partition("=")
    if _key.strip() not in PIER_PROJECT_CEILINGS or not _value.strip():
        raise ImproperlyConfigured(f"PIER_PROJECT_CEILINGS: {_item!r} is not <quantity key>=<quantity>; "
                                   f"keys: {', '.join(PIER_PROJECT_CEILINGS)}.")
    PIER_PROJECT_CEILINGS[_key.strip()] = _value.strip()
# The networks session runners may be allowed to reach (sessions.egress stays inside them).
PIER_RUNNER_EGRESS_ALLOWED = env_list("PIER_RUNNER_EGRESS_ALLOWED", "0.0.0.0/0,::/0")
# Namespaces outside the organization that a project may admit traffic from (network.allow_from):
# the ingress router's by default. A project may also name its organization's other projects.
PIER_NETWORK_ALLOWED_NAMESPACES = env_list("PIER_NETWORK_ALLOWED_NAMESPACES", ",".join(PIER_NETWORK_ALLOW_FROM))
# Access keys: default and longest lifetime (days), and the secret mixed into their hashes.
PIER_KEY_DEFAULT_DAYS = env_int("PIER_KEY_DEFAULT_DAYS", 90)
PIER_KEY_MAX_DAYS = min(env_int("PIER_KEY_MAX_DAYS", 365), 365)
PIER_KEY_PEPPER = os.environ.get("PIER_KEY_PEPPER", "")
if not PIER_KEY_PEPPER:
    if not (DEBUG or TESTING):
        # Its own secret, so that rotating SECRET_KEY does not invalidate every access key.
        raise ImproperlyConfigured("PIER_KEY_PEPPER must be set when DEBUG is off (a long random string).")
    PIER_KEY_PEPPER = SECRET_KEY
else:
    # A short pepper can be guessed, and with it every stored key hash checked offline.
    require_long_secret("PIER_KEY_PEPPER", PIER_KEY_PEPPER)
PIER_PROJECT_MAX_RETRIES = env_int("PIER_PROJECT_MAX_RETRIES", 8)
PIER_PROJECT_BACKOFF = env_float("PIER_PROJECT_BACKOFF", 2.0)
PIER_NAMESPACE_POLL_SECONDS = env_float("PIER_NAMESPACE_POLL_SECONDS", 2.0)

CELERY_BEAT_SCHEDULE = {
    "resume-stuck-provisioning": {
        "task": "tenants.tasks.resume_stuck_jobs",
        "schedule": PIER_RECONCILE_INTERVAL,
    },
    "tenant-defaults": {
        "task": "tenants.tasks.fan_out_to_active_tenants",
        "args": ["tenants.tasks.ensure_tenant_defaults"],
        "schedule": PIER_RECONCILE_INTERVAL,
    },
    "reconcile-projects": {
        "task": "tenants.tasks.fan_out_to_active_tenants",
        "args": ["tenants.projects.tasks.reconcile_all_projects"],
        "schedule": PIER_RECONCILE_INTERVAL,
    },
    "sync-sessions": {
        "task": "sessions.tasks.sync_sessions",
        "schedule": PIER_SESSION_SYNC_SECONDS,
        "options": {"expires": PIER_SESSION_SYNC_SECONDS},
    },
    "reconcile-sessions": {
        "task": "tenants.tasks.fan_out_to_active_tenants",
        "args": ["sessions.tasks.reconcile_live_sessions"],
        "schedule": PIER_RECONCILE_INTERVAL,
    },
}

# --- Logging ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "portal.request_id.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}
