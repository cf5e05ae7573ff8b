"""The SQLite counters file (SQLITE_PATH): bootstrap, connections, read and increment.

Every connection here is in autocommit mode with a 5 s busy timeout, so SQLITE_WRITE commits
as it completes. The statements are in appkit.sql; an async app that calls sqlite3 on its
event loop on purpose makes that call itself, in app.py (the `# BLOCKING` lines).
"""

import os
import sqlite3
import threading
import time

from appkit.contract import SQLITE_PATH
from appkit.sql import SQLITE_READ, SQLITE_ROWS, SQLITE_SCHEMA, SQLITE_SEED, SQLITE_WRITE


def open_sqlite():
    """A stdlib sqlite3 connection to SQLITE_PATH: 5 s busy timeout, autocommit. Not tied to
    the thread that opened it (an app keeps one per thread, or uses it from one thread)."""
    return sqlite3.connect(SQLITE_PATH, timeout=5.0, isolation_level=None, check_same_thread=False)


def init_sqlite():
    """Creates the counters table with rows 1..2000 (value 0) where missing, in WAL mode.
    Safe with several workers doing it at once: a worker that finds the file locked retries."""
    os.makedirs(os.path.dirname(os.path.abspath(SQLITE_PATH)), exist_ok=True)
    for attempt in range(20):
        try:
            conn = open_sqlite()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(SQLITE_SCHEMA)
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(SQLITE_SEED, ((i,) for i in range(1, SQLITE_ROWS + 1)))
                conn.execute("COMMIT")
                return
            finally:
                conn.close()
        except sqlite3.OperationalError:  # e.g. locked by another worker starting
            if attempt == 19:
                raise
            time.sleep(0.05 * (attempt + 1))


_thread = threading.local()


def thread_sqlite():
    """The calling thread's own connection (a threadpool thread's, or a server thread's)."""
    conn = getattr(_thread, "conn", None)
    if conn is None:
        conn = _thread.conn = open_sqlite()
    return conn


_process = {"pid": None, "conn": None}


def process_sqlite():
    """This process's one connection, for a process that serves one request at a time (a
    gunicorn sync worker): the first call in a process bootstraps the file and opens it, so
    nothing opened before a fork is used after it."""
    if _process["pid"] != os.getpid():
        init_sqlite()
        _process["conn"], _process["pid"] = open_sqlite(), os.getpid()
    return _process["conn"]


async def open_aiosqlite():
    """An aiosqlite connection to SQLITE_PATH: 5 s busy timeout, autocommit."""
    import aiosqlite

    conn = aiosqlite.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)
    # aiosqlite runs the connection on its own thread, which is not a daemon: a worker whose
    # server skips its shutdown hook (mrhttp on a second SIGTERM) could then never exit.
    # Set before the thread starts.
    conn._thread.daemon = True
    return await conn


def counter_json(rows):
    """SQLITE_READ's or SQLITE_WRITE's rows as {"id", "value"}; None if there was no row."""
    if not rows:
        return None
    return {"id": rows[0][0], "value": rows[0][1]}


def read_counter(conn, counter_id):
    return counter_json(conn.execute(SQLITE_READ, (counter_id,)).fetchall())


def increment_counter(conn, counter_id):
    """Increments and commits (one autocommit statement); None if there is no such row."""
    return counter_json(conn.execute(SQLITE_WRITE, (counter_id,)).fetchall())


def thread_read_counter(counter_id):
    """read_counter() on the calling thread's connection: what an async app hands its threadpool."""
    return read_counter(thread_sqlite(), counter_id)


def thread_increment_counter(counter_id):
    """increment_counter() on the calling thread's connection: what an async app hands its threadpool."""
    return increment_counter(thread_sqlite(), counter_id)
