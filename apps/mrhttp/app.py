"""mrhttp (0.13) app serving the apps/README.md contract, for the scenarios mrhttp can serve.

`app.run(cores=N)` binds one socket and forks N worker processes, each running its own uvloop
event loop with mrhttp's C protocol. The "at_start" listener runs in each worker after the fork
and creates that worker's asyncpg pool and SQLite connections.

mrhttp 0.13 limits, all reproduced by hand (see app.toml [unsupported]):
- the request parser accepts only GET and POST (a PUT corrupts the worker's heap);
- a handler's response always has status 200; other statuses only via HTTPError(400..599),
  which sends a fixed HTML page; Content-Type is only text/html, text/plain, application/json
  or application/mrpacker (the route's _type); no streaming, no WebSockets;
- Request.query_string / Request.args are cached on the reused Request object and never reset,
  and returned without a new reference: on a keep-alive connection the next request sees the
  previous query string and the worker then segfaults. So no endpoint here reads a query string.
- Request.method / .path / .query_string return a borrowed reference on the second access (the
  refcount underflows), so each handler reads request.method at most once.
The router ignores `methods` (one handler per path).
"""

import argparse
import asyncio
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone

import aiosqlite
import asyncpg
import mrhttp

_parser = argparse.ArgumentParser()
_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
_parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))

DATABASE_URL = os.environ.get("DATABASE_URL")
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
SQLITE_PATH = os.environ.get("SQLITE_PATH", "/tmp/mrhttp-sqlite.db")

IO_FILE_SIZE = 65536

app = mrhttp.Application()

# Per-worker state, filled in by the at_start listener (runs in each forked worker).
STATE = {"pg": None, "aiosqlite": None, "sqlite_blocking": None}
_sqlite_tls = threading.local()


# ---------------------------------------------------------------- helpers

def dumps(obj):
    return json.dumps(obj)


def http_error(status):
    """mrhttp's only way to answer with a non-200 status (fixed HTML body)."""
    return mrhttp.HTTPError(status)


def require_method(request, *methods):
    if request.method not in methods:
        raise http_error(405)


def parse_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def pg_pool():
    pool = STATE["pg"]
    if pool is None:
        raise RuntimeError("DATABASE_URL is not set")
    return pool


def sqlite_connect():
    conn = sqlite3.connect(SQLITE_PATH, timeout=5.0, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def sqlite_init():
    conn = sqlite_connect()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
    conn.executemany("INSERT OR IGNORE INTO counters (id, value) VALUES (?, 0)", [(i,) for i in range(1, 2001)])
    conn.commit()
    conn.close()


def sqlite_thread_conn():
    conn = getattr(_sqlite_tls, "conn", None)
    if conn is None:
        conn = _sqlite_tls.conn = sqlite_connect()
    return conn


def sqlite_read_sync(conn, counter_id):
    row = conn.execute("SELECT value FROM counters WHERE id = ?", (counter_id,)).fetchone()
    return None if row is None else row[0]


def sqlite_write_sync(conn, counter_id):
    rows = conn.execute(
        "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING value", (counter_id,)
    ).fetchall()
    conn.commit()
    return rows[0][0] if rows else None


def sleep_sync():
    time.sleep(0.05)


def counter_body(counter_id, value):
    if value is None:
        raise http_error(404)
    return dumps({"id": counter_id, "value": value})


def counter_id_or_400(raw):
    counter_id = parse_int(raw)
    if counter_id is None:
        raise http_error(400)
    return counter_id


# ---------------------------------------------------------------- lifecycle

@app.on("at_start")
async def worker_start():
    if DATABASE_URL:
        STATE["pg"] = await asyncpg.create_pool(DATABASE_URL, min_size=DB_POOL_SIZE, max_size=DB_POOL_SIZE)
    sqlite_init()
    STATE["sqlite_blocking"] = sqlite_connect()
    # Autocommit: each statement commits as it completes inside aiosqlite's thread, so no
    # transaction stays open across event-loop turns.
    conn = aiosqlite.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)
    # aiosqlite 0.22's connection thread is not a daemon; mrhttp's shutdown path (at_end) is
    # skipped when a second SIGTERM (the parent forwards one) stops the loop early, and a live
    # non-daemon thread would then keep the worker from exiting. Set before the thread starts.
    conn._thread.daemon = True
    STATE["aiosqlite"] = await conn
    await STATE["aiosqlite"].execute("PRAGMA busy_timeout = 5000")


@app.on("at_end")
async def worker_end():
    if STATE["aiosqlite"] is not None:
        await STATE["aiosqlite"].close()
    if STATE["pg"] is not None:
        await STATE["pg"].close()


# ---------------------------------------------------------------- core

@app.route("/ping", _type="text")
def ping(request):
    return "pong"


@app.route("/json", _type="json")
def json_endpoint(request):
    ts = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return dumps({"message": "hello", "ts": ts})


# GET /db-read?id=N, GET /cpu?n=N: not served (need the query string, see above).
# POST /db-write: not served (needs 201 Created).


@app.route("/upload", methods=["POST"], _type="json")
def upload(request):
    require_method(request, "POST")
    data = request.body or b""
    return dumps({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})


# GET /stream: not served (unsupported, see app.toml): mrhttp 0.13 cannot stream and has no
# application/octet-stream response type.


# ---------------------------------------------------------------- blocking group

@app.route("/sleep/async", _type="json")
async def sleep_async(request):
    await asyncio.sleep(0.05)
    return dumps({"slept_ms": 50, "mode": "async"})


@app.route("/sleep/threadpool", _type="json")
async def sleep_threadpool(request):
    await asyncio.get_running_loop().run_in_executor(None, sleep_sync)
    return dumps({"slept_ms": 50, "mode": "threadpool"})


@app.route("/sleep/blocking", _type="json")
async def sleep_blocking(request):
    time.sleep(0.05)  # BLOCKING: stalls this worker's event loop (the anti-pattern on purpose)
    return dumps({"slept_ms": 50, "mode": "blocking"})


@app.route("/sqlite/async/read/{}", _type="json")
async def sqlite_async_read(request, raw_id):
    counter_id = counter_id_or_400(raw_id)
    rows = await STATE["aiosqlite"].execute_fetchall("SELECT value FROM counters WHERE id = ?", (counter_id,))
    return counter_body(counter_id, rows[0][0] if rows else None)


@app.route("/sqlite/async/write/{}", methods=["POST"], _type="json")
async def sqlite_async_write(request, raw_id):
    require_method(request, "POST")
    counter_id = counter_id_or_400(raw_id)
    # Autocommit connection: the UPDATE is committed when it completes (before this returns).
    rows = await STATE["aiosqlite"].execute_fetchall(
        "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING value", (counter_id,)
    )
    return counter_body(counter_id, rows[0][0] if rows else None)


@app.route("/sqlite/threadpool/read/{}", _type="json")
async def sqlite_threadpool_read(request, raw_id):
    counter_id = counter_id_or_400(raw_id)
    value = await asyncio.get_running_loop().run_in_executor(
        None, lambda: sqlite_read_sync(sqlite_thread_conn(), counter_id)
    )
    return counter_body(counter_id, value)


@app.route("/sqlite/threadpool/write/{}", methods=["POST"], _type="json")
async def sqlite_threadpool_write(request, raw_id):
    require_method(request, "POST")
    counter_id = counter_id_or_400(raw_id)
    value = await asyncio.get_running_loop().run_in_executor(
        None, lambda: sqlite_write_sync(sqlite_thread_conn(), counter_id)
    )
    return counter_body(counter_id, value)


@app.route("/sqlite/blocking/read/{}", _type="json")
async def sqlite_blocking_read(request, raw_id):
    counter_id = counter_id_or_400(raw_id)
    value = sqlite_read_sync(STATE["sqlite_blocking"], counter_id)  # BLOCKING: sqlite3 on the event loop
    return counter_body(counter_id, value)


@app.route("/sqlite/blocking/write/{}", methods=["POST"], _type="json")
async def sqlite_blocking_write(request, raw_id):
    require_method(request, "POST")
    counter_id = counter_id_or_400(raw_id)
    value = sqlite_write_sync(STATE["sqlite_blocking"], counter_id)  # BLOCKING: sqlite3 on the event loop
    return counter_body(counter_id, value)


# ---------------------------------------------------------------- crud: only the health route
# (the crud scenario is unsupported: no PUT, no 201, no query string for /items?limit&offset).

@app.route("/", _type="json")
def health(request):
    return dumps({"status": "ok"})


# ---------------------------------------------------------------- mixed

def _count(status):
    return int(status.split()[-1])


def temp_file_roundtrip():
    """Writes a per-request 64 KiB temp file, reads it back, deletes it; returns the bytes read."""
    data = os.urandom(IO_FILE_SIZE)
    fd, path = tempfile.mkstemp(prefix="mrhttp-io-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            read_back = f.read()
    finally:
        os.unlink(path)
    if read_back != data:
        raise RuntimeError("temp file read back differs")
    return len(read_back)


@app.route("/io-intensive", methods=["POST"], _type="json")
async def io_intensive(request):
    require_method(request, "POST")
    file_bytes = await asyncio.get_running_loop().run_in_executor(None, temp_file_roundtrip)  # file I/O in a worker thread
    request_id = uuid.uuid4().hex
    async with pg_pool().acquire() as conn:
        async with conn.transaction():
            inserted = _count(await conn.execute(
                "INSERT INTO io_log (request_id, n, note) SELECT $1, g, 'inserted' FROM generate_series(0, 9) AS g",
                request_id,
            ))
            updated = _count(await conn.execute(
                "UPDATE io_log SET note = 'updated' WHERE request_id = $1 AND n < 5", request_id
            ))
            deleted = _count(await conn.execute("DELETE FROM io_log WHERE request_id = $1", request_id))
    return dumps({"file_bytes": file_bytes, "inserted": inserted, "updated": updated, "deleted": deleted})


if __name__ == "__main__":
    ARGS = _parser.parse_args()
    app.run(host=ARGS.host, port=ARGS.port, cores=max(1, ARGS.workers))
