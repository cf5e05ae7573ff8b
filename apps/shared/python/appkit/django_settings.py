"""The settings the two Django apps (apps/django, apps/django-drf) share, as plain values:
this module imports nothing from Django. Their benchapp/settings.py does
`from appkit.django_settings import *` and adds its own INSTALLED_APPS (and REST_FRAMEWORK):
no models, no migrations, as the tables already exist."""

import os
from urllib.parse import unquote, urlsplit

from appkit.contract import DATABASE_URL

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "runner-benchmark-app-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]

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

# Django's psycopg2 backend has no pool: it keeps one persistent connection per thread
# (CONN_MAX_AGE = None), opened lazily on the first query in each gunicorn worker process. A
# sync worker has one thread, so it holds one connection (DB_POOL_SIZE cannot add more).


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


DATABASES = {"default": _database(DATABASE_URL)} if DATABASE_URL else {}

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
