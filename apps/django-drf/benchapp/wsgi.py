"""WSGI entry point: gunicorn imports this module in each worker process after the fork
(no --preload), which is the worker start: the SQLite counters table is set up here."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")

from appkit.sqlite import process_sqlite  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

process_sqlite()
