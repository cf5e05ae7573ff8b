"""appkit: what every bundled Python app does the same way, so that it exists once.

runner puts apps/shared/python on PYTHONPATH for every app it starts. The kit imports only
the standard library at import time; the drivers (asyncpg, aiosqlite, psycopg2) are imported
inside the functions that use them, since each app installs only its own.

    appkit.contract         the environment, the contract's constants and bodies, parsing,
                            the CPU loop, the temp-file roundtrip of POST /io-intensive
    appkit.sql              every SQL statement (PostgreSQL and SQLite) as text, and psycopg()
                            for the drivers that take %s placeholders (psycopg2, Django)
    appkit.sqlite           the SQLite counters file: bootstrap, connections, read/increment
    appkit.pg               PostgreSQL: the asyncpg pool, a per-process psycopg2 pool, and the
                            io_log transaction of POST /io-intensive for both
    appkit.django_settings  the settings the two Django apps share (plain values)

An app keeps its routing and its concurrency idiom: how it awaits, what it hands to a thread,
how it calls its driver, and every call that blocks on purpose (the `# BLOCKING` lines that
`runner diagnose` must find in app.py).
"""
