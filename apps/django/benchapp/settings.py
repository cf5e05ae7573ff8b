"""Settings for the Django benchmark app, all from the environment runner provides
(DATABASE_URL, SQLITE_PATH; see apps/README.md). Everything it shares with apps/django-drf
is in the kit: apps/shared/python/appkit/django_settings.py."""

from appkit.django_settings import *  # noqa: F401,F403

INSTALLED_APPS = []  # no models, no migrations: the tables already exist
