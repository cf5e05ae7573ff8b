"""PostgreSQL (DATABASE_URL): an asyncpg pool, a per-process psycopg2 pool, and the io_log
transaction of POST /io-intensive for both. The statements are in appkit.sql."""

import os
import threading
import uuid
from contextlib import contextmanager

from appkit.contract import DATABASE_URL, DB_POOL_SIZE
from appkit.sql import IO_LOG_DELETE, IO_LOG_INSERT, IO_LOG_UPDATE, psycopg

# ---------------------------------------------------------------- asyncpg


async def asyncpg_pool():
    """A new asyncpg pool of DB_POOL_SIZE connections (one per worker process: create it in
    the worker, after any fork); None without DATABASE_URL."""
    if not DATABASE_URL:
        return None
    import asyncpg

    return await asyncpg.create_pool(DATABASE_URL, min_size=DB_POOL_SIZE, max_size=DB_POOL_SIZE)


def _count(status):
    """The row count of an asyncpg command status ("INSERT 0 10", "UPDATE 5", "DELETE 10")."""
    return int(status.split()[-1])


async def io_log_async(pool):
    """POST /io-intensive's database part on an asyncpg pool: one transaction inserting 10
    io_log rows for a new request_id, updating 5 and deleting the 10; returns the counts."""
    request_id = uuid.uuid4().hex
    async with pool.acquire() as conn:
        async with conn.transaction():
            inserted = await conn.execute(IO_LOG_INSERT, request_id)
            updated = await conn.execute(IO_LOG_UPDATE, request_id)
            deleted = await conn.execute(IO_LOG_DELETE, request_id)
    return {"inserted": _count(inserted), "updated": _count(updated), "deleted": _count(deleted)}


# ---------------------------------------------------------------- psycopg2 and Django cursors


def fetchrow(cur, sql, *args):
    """Runs a $1..$n statement (appkit.sql) on a DB-API cursor with %s placeholders (psycopg2,
    Django) and returns its first row, or None: asyncpg's fetchrow for those drivers."""
    cur.execute(*psycopg(sql, *args))
    return cur.fetchone()


def fetch(cur, sql, *args):
    """As fetchrow(), but all the rows."""
    cur.execute(*psycopg(sql, *args))
    return cur.fetchall()


def io_log(cur):
    """POST /io-intensive's database part on a DB-API cursor with %s placeholders (psycopg2,
    Django) that the caller has put in one transaction; returns the counts."""
    request_id = uuid.uuid4().hex
    counts = {}
    for key, sql in (("inserted", IO_LOG_INSERT), ("updated", IO_LOG_UPDATE), ("deleted", IO_LOG_DELETE)):
        cur.execute(*psycopg(sql, request_id))
        counts[key] = cur.rowcount
    return counts


class PsycopgPool:
    """psycopg2 connections to DATABASE_URL (session time zone UTC) for this process: the pool
    is opened on first use, and again in a forked child (one opened before a fork is kept
    referenced there but never used or closed). At most DB_POOL_SIZE connections; a thread
    that finds them all in use waits for one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pid = None
        self._pool = None
        self._slots = None
        self._inherited = []

    def _current(self):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    if not DATABASE_URL:
                        raise RuntimeError("DATABASE_URL is not set")
                    import psycopg2.pool

                    if self._pool is not None:
                        self._inherited.append(self._pool)
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        1, DB_POOL_SIZE, DATABASE_URL, options="-c timezone=UTC"
                    )
                    self._slots = threading.BoundedSemaphore(DB_POOL_SIZE)
                    self._pid = os.getpid()
        return self._pool, self._slots

    def fetchrow(self, sql, *args):
        """fetchrow() on a pooled connection in autocommit mode."""
        with self.cursor() as cur:
            return fetchrow(cur, sql, *args)

    def fetch(self, sql, *args):
        """fetch() on a pooled connection in autocommit mode."""
        with self.cursor() as cur:
            return fetch(cur, sql, *args)

    @contextmanager
    def cursor(self, transaction=False):
        """A cursor on a pooled connection: autocommit, or with `transaction` one transaction,
        committed when the block ends and rolled back if it raises."""
        import psycopg2

        pool, slots = self._current()
        with slots:
            conn = pool.getconn()
            ok = False
            try:
                conn.autocommit = not transaction
                with conn.cursor() as cur:
                    yield cur
                if transaction:
                    conn.commit()
                ok = True
            finally:
                if not ok and not conn.closed:
                    try:
                        conn.rollback()
                    except psycopg2.Error:
                        pass
                pool.putconn(conn, close=bool(conn.closed))
