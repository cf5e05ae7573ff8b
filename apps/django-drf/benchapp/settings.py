"""Settings for the Django REST framework benchmark app, all from the environment runner
provides (DATABASE_URL, SQLITE_PATH; see apps/README.md). Everything it shares with
apps/django is in the kit: apps/shared/python/appkit/django_settings.py."""

from appkit.django_settings import *  # noqa: F401,F403

INSTALLED_APPS = ["rest_framework"]  # no models, no migrations: the tables already exist

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # A public, stateless API: no authentication, permissions or throttling (and so no
    # django.contrib.auth / sessions).
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_THROTTLE_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    # JSON whatever the Accept header says (the load client's Accept is not negotiated).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "benchapp.drf.IgnoreClientContentNegotiation",
    # Errors as {"error": ...}.
    "EXCEPTION_HANDLER": "benchapp.drf.exception_handler",
}
