"""The SQLite counters table: one sqlite3 connection per worker process."""

import os
import sqlite3
import time

from django.conf import settings

_conn = None
_conn_pid = None


def _open():
    path = settings.SQLITE_PATH
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    last_error = None
    for attempt in range(20):
        conn = None
        try:
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters "
                "(id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"
            )
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR IGNORE INTO counters (id, value) VALUES (?, 0)",
                ((i,) for i in range(1, 2001)),
            )
            conn.execute("COMMIT")
            return conn
        except sqlite3.OperationalError as e:  # e.g. locked by another worker starting
            last_error = e
            if conn is not None:
                conn.close()
            time.sleep(0.05 * (attempt + 1))
    raise last_error


def connection():
    """This process's connection (re-opened if the process forked since)."""
    global _conn, _conn_pid
    pid = os.getpid()
    if _conn is None or _conn_pid != pid:
        _conn = _open()
        _conn_pid = pid
    return _conn


def read(item_id):
    row = connection().execute("SELECT value FROM counters WHERE id = ?", (item_id,)).fetchone()
    return None if row is None else row[0]


def increment(item_id):
    """UPDATE, read the new value, COMMIT; None if there is no such row."""
    conn = connection()
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute("UPDATE counters SET value = value + 1 WHERE id = ?", (item_id,))
        if cur.rowcount == 0:
            conn.execute("ROLLBACK")
            return None
        value = conn.execute("SELECT value FROM counters WHERE id = ?", (item_id,)).fetchone()[0]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return value
