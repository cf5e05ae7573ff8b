"""Settings for the Django benchmark app, all from the environment runner provides
(DATABASE_URL, DB_POOL_SIZE, SQLITE_PATH; see apps/README.md)."""

import os
import tempfile
from urllib.parse import unquote, urlsplit

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "runner-benchmark-app-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = []  # no models, no migrations: the tables already exist
# CommonMiddleware only, for its Content-Length header (gunicorn would otherwise send chunked
# responses); no sessions, auth, CSRF or messages: the endpoints are a stateless JSON API.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
APPEND_SLASH = False
ROOT_URLCONF = "benchapp.urls"
WSGI_APPLICATION = "benchapp.wsgi.application"
TEMPLATES = []

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

# Connections per worker process. Django's psycopg2 backend has no pool: it keeps one
# persistent connection per thread (CONN_MAX_AGE = None), opened lazily on the first query
# in each gunicorn worker process. A sync worker has one thread, so it holds one connection
# (<= DB_POOL_SIZE).
DB_POOL_SIZE = max(1, int(os.environ.get("DB_POOL_SIZE") or 1))


def _database(url):
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": False,
        "OPTIONS": {"options": "-c timezone=UTC"},
    }


DATABASES = {"default": _database(os.environ["DATABASE_URL"])} if os.environ.get("DATABASE_URL") else {}

SQLITE_PATH = os.environ.get("SQLITE_PATH") or os.path.join(
    tempfile.gettempdir(), "django-bench-sqlite.db"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django": {"handlers": ["console"], "level": "WARNING"},
        # 4xx responses are part of the contract (404, 400): do not log each one.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
