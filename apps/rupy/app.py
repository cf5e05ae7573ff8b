"""rupy-api (0.3.2) app serving the apps/README.md contract.

Rupy runs one process: an Axum/hyper server on a multi-threaded tokio runtime that calls the
(sync) Python handlers directly on its worker threads, holding the GIL while Python runs.
`--threads N` sets TOKIO_WORKER_THREADS before the runtime is built, so N handlers can be in
flight at once (they overlap only while they wait with the GIL released: sleep, DB, SQLite).
rupy-api has no async handlers, no raw request bytes, no streaming and no WebSockets; see app.toml.
"""

import argparse
import json
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

_parser = argparse.ArgumentParser()
_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
_parser.add_argument("--threads", type=int, default=int(os.environ.get("WORKERS", "1")))
ARGS = _parser.parse_args()
# tokio reads this when rupy builds its multi-threaded runtime inside app.run().
os.environ["TOKIO_WORKER_THREADS"] = str(max(1, ARGS.threads))

import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402
import psycopg2.extras  # noqa: E402
import psycopg2.pool  # noqa: E402
from rupy import Request, Response, Rupy  # noqa: E402

DATABASE_URL = os.environ.get("DATABASE_URL")
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
SQLITE_PATH = os.environ.get("SQLITE_PATH", "/tmp/rupy-sqlite.db")

MASK64 = (1 << 64) - 1
# Rupy response bodies are Python str (sent UTF-8 encoded); U+0000 encodes to one 0x00 byte.
STREAM_BODY = "\x00" * (65536 * 160)
IO_FILE_SIZE = 65536
ITEM_COLUMNS = "id, name, description, price, created_at"

app = Rupy()


# ---------------------------------------------------------------- PostgreSQL (one pool, one process)

_pg_pool = None
_pg_slots = threading.BoundedSemaphore(DB_POOL_SIZE)  # wait for a free connection instead of failing


def pg_init():
    global _pg_pool
    if DATABASE_URL:
        _pg_pool = psycopg2.pool.ThreadedConnectionPool(
            1, DB_POOL_SIZE, DATABASE_URL, options="-c timezone=UTC"
        )


@contextmanager
def pg():
    """A pooled connection inside one transaction (commit on success, rollback on error)."""
    if _pg_pool is None:
        raise RuntimeError("DATABASE_URL is not set")
    with _pg_slots:
        conn = _pg_pool.getconn()
        try:
            with conn:  # psycopg2: commits on exit, rolls back on exception
                with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    yield cur
        finally:
            _pg_pool.putconn(conn)


# ---------------------------------------------------------------- SQLite (stdlib, one connection per thread)

_sqlite_tls = threading.local()


def sqlite_connect():
    conn = sqlite3.connect(SQLITE_PATH, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def sqlite_init():
    conn = sqlite_connect()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
    conn.executemany("INSERT OR IGNORE INTO counters (id, value) VALUES (?, 0)", [(i,) for i in range(1, 2001)])
    conn.commit()
    conn.close()


def sqlite_conn():
    conn = getattr(_sqlite_tls, "conn", None)
    if conn is None:
        conn = _sqlite_tls.conn = sqlite_connect()
    return conn


def sqlite_read(counter_id):
    row = sqlite_conn().execute("SELECT value FROM counters WHERE id = ?", (counter_id,)).fetchone()
    return None if row is None else row[0]


def sqlite_write(counter_id):
    conn = sqlite_conn()
    rows = conn.execute(
        "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING value", (counter_id,)
    ).fetchall()
    conn.commit()
    return rows[0][0] if rows else None


# ---------------------------------------------------------------- helpers

def json_response(obj, status=200):
    resp = Response(json.dumps(obj), status=status)
    resp.set_header("Content-Type", "application/json")
    return resp


def error(status, message):
    return json_response({"error": message}, status)


def item_dict(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),
        "created_at": row["created_at"].isoformat(),
    }


def parse_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_item(request, partial=False):
    try:
        data = json.loads(request.body or "null")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name, description, price = data.get("name"), data.get("description"), data.get("price")
    if name is not None and not isinstance(name, str):
        return None
    if description is not None and not isinstance(description, str):
        return None
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))):
        return None
    if not partial and (name is None or price is None):
        return None
    return {
        "name": name,
        "description": description if (partial or description is not None) else "",
        "price": float(price) if price is not None else None,
    }


def counter_response(counter_id, value):
    if value is None:
        return error(404, "not found")
    return json_response({"id": counter_id, "value": value})


# ---------------------------------------------------------------- core

@app.route("/ping", methods=["GET"])
def ping(request: Request) -> Response:
    resp = Response("pong")
    resp.set_header("Content-Type", "text/plain; charset=utf-8")
    return resp


@app.route("/json", methods=["GET"])
def json_endpoint(request: Request) -> Response:
    ts = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json_response({"message": "hello", "ts": ts})


@app.route("/db-read", methods=["GET"])
def db_read(request: Request) -> Response:
    item_id = parse_int(request.get_query_param("id"))
    if item_id is None:
        return error(400, "id must be an integer")
    with pg() as cur:
        cur.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = %s", (item_id,))
        row = cur.fetchone()
    if row is None:
        return error(404, "not found")
    return json_response(item_dict(row))


@app.route("/db-write", methods=["POST"])
def db_write(request: Request) -> Response:
    item = parse_item(request)
    if item is None:
        return error(400, "body must be JSON {name, description, price}")
    try:
        with pg() as cur:
            cur.execute(
                "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) RETURNING id",
                (item["name"], item["description"], item["price"]),
            )
            new_id = cur.fetchone()["id"]
    except psycopg2.errors.UniqueViolation:
        return error(409, "name already exists")
    return json_response({"id": new_id}, 201)


@app.route("/upload", methods=["POST"])
def upload(request: Request) -> Response:
    # Unsupported (see app.toml): rupy hands the body over only as a str decoded lossily from
    # UTF-8, so the bytes that were sent cannot be recovered and hashed.
    return error(501, "rupy-api 0.3.2 exposes no raw request body bytes")


@app.route("/stream", methods=["GET"])
def stream(request: Request) -> Response:
    resp = Response(STREAM_BODY)  # whole 10 MiB body: rupy has no streaming responses
    resp.set_header("Content-Type", "application/octet-stream")
    return resp


@app.route("/cpu", methods=["GET"])
def cpu(request: Request) -> Response:
    n = parse_int(request.get_query_param("n"))
    if n is None:
        return error(400, "n must be an integer")
    result = 0
    for i in range(n):
        result = (result + i * i) & MASK64
    return json_response({"n": n, "result": result})


# ---------------------------------------------------------------- blocking group
# rupy-api has only sync handlers, each run on a tokio worker thread: all three variants of each
# pair are the same plain blocking call (as for Flask); see [notes] in app.toml.

@app.route("/sleep/async", methods=["GET"])
def sleep_async(request: Request) -> Response:
    time.sleep(0.05)  # BLOCKING: no async handlers in rupy; blocks this tokio worker thread
    return json_response({"slept_ms": 50, "mode": "async"})


@app.route("/sleep/threadpool", methods=["GET"])
def sleep_threadpool(request: Request) -> Response:
    time.sleep(0.05)  # BLOCKING: the sync handler itself runs on a tokio worker thread
    return json_response({"slept_ms": 50, "mode": "threadpool"})


@app.route("/sleep/blocking", methods=["GET"])
def sleep_blocking(request: Request) -> Response:
    time.sleep(0.05)  # BLOCKING: blocks this tokio worker thread
    return json_response({"slept_ms": 50, "mode": "blocking"})


@app.route("/sqlite/async/read/<id>", methods=["GET"])
def sqlite_async_read(request: Request, id: str) -> Response:
    counter_id = parse_int(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_read(counter_id)  # BLOCKING: stdlib sqlite3 (no event loop for aiosqlite)
    return counter_response(counter_id, value)


@app.route("/sqlite/async/write/<id>", methods=["POST"])
def sqlite_async_write(request: Request, id: str) -> Response:
    counter_id = parse_int(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_write(counter_id)  # BLOCKING: stdlib sqlite3 (no event loop for aiosqlite)
    return counter_response(counter_id, value)


@app.route("/sqlite/threadpool/read/<id>", methods=["GET"])
def sqlite_threadpool_read(request: Request, id: str) -> Response:
    counter_id = parse_int(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_read(counter_id)  # BLOCKING: stdlib sqlite3 on this tokio worker thread
    return counter_response(counter_id, value)


@app.route("/sqlite/threadpool/write/<id>", methods=["POST"])
def sqlite_threadpool_write(request: Request, id: str) -> Response:
    counter_id = parse_int(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_write(counter_id)  # BLOCKING: stdlib sqlite3 on this tokio worker thread
    return counter_response(counter_id, value)


@app.route("/sqlite/blocking/read/<id>", methods=["GET"])
def sqlite_blocking_read(request: Request, id: str) -> Response:
    counter_id = parse_int(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_read(counter_id)  # BLOCKING: stdlib sqlite3 on this tokio worker thread
    return counter_response(counter_id, value)


@app.route("/sqlite/blocking/write/<id>", methods=["POST"])
def sqlite_blocking_write(request: Request, id: str) -> Response:
    counter_id = parse_int(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_write(counter_id)  # BLOCKING: stdlib sqlite3 on this tokio worker thread
    return counter_response(counter_id, value)


# ---------------------------------------------------------------- crud

@app.route("/", methods=["GET"])
def health(request: Request) -> Response:
    return json_response({"status": "ok"})


@app.route("/items", methods=["GET"])
def list_items(request: Request) -> Response:
    params = request.query_params
    limit = parse_int(params.get("limit", "10"))
    offset = parse_int(params.get("offset", "0"))
    if limit is None or offset is None:
        return error(400, "limit and offset must be integers")
    limit = max(0, min(limit, 100))
    offset = max(0, offset)
    with pg() as cur:
        cur.execute(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT %s OFFSET %s", (limit, offset))
        rows = cur.fetchall()
    return json_response([item_dict(r) for r in rows])


@app.route("/items", methods=["POST"])
def create_item(request: Request) -> Response:
    item = parse_item(request)
    if item is None:
        return error(400, "body must be JSON {name, description, price}")
    try:
        with pg() as cur:
            cur.execute(
                f"INSERT INTO items (name, description, price) VALUES (%s, %s, %s) RETURNING {ITEM_COLUMNS}",
                (item["name"], item["description"], item["price"]),
            )
            row = cur.fetchone()
    except psycopg2.errors.UniqueViolation:
        return error(409, "name already exists")
    return json_response(item_dict(row), 201)


@app.route("/items/<id>", methods=["GET"])
def get_item(request: Request, id: str) -> Response:
    item_id = parse_int(id)
    if item_id is None:
        return error(400, "id must be an integer")
    with pg() as cur:
        cur.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = %s", (item_id,))
        row = cur.fetchone()
    if row is None:
        return error(404, "not found")
    return json_response(item_dict(row))


@app.route("/items/<id>", methods=["PUT"])
def update_item(request: Request, id: str) -> Response:
    item_id = parse_int(id)
    if item_id is None:
        return error(400, "id must be an integer")
    item = parse_item(request, partial=True)
    if item is None:
        return error(400, "body must be JSON with any of {name, description, price}")
    try:
        with pg() as cur:
            cur.execute(
                "UPDATE items SET name = COALESCE(%s, name), description = COALESCE(%s, description),"
                f" price = COALESCE(%s, price) WHERE id = %s RETURNING {ITEM_COLUMNS}",
                (item["name"], item["description"], item["price"], item_id),
            )
            row = cur.fetchone()
    except psycopg2.errors.UniqueViolation:
        return error(409, "name already exists")
    if row is None:
        return error(404, "not found")
    return json_response(item_dict(row))


@app.route("/upsert", methods=["POST"])
def upsert(request: Request) -> Response:
    item = parse_item(request)
    if item is None:
        return error(400, "body must be JSON {name, description, price}")
    with pg() as cur:
        cur.execute(
            "INSERT INTO items (name, description, price) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price"
            f" RETURNING {ITEM_COLUMNS}",
            (item["name"], item["description"], item["price"]),
        )
        row = cur.fetchone()
    return json_response(item_dict(row))


# ---------------------------------------------------------------- mixed

def temp_file_roundtrip():
    """Writes a per-request 64 KiB temp file, reads it back, deletes it; returns the bytes read."""
    data = os.urandom(IO_FILE_SIZE)
    fd, path = tempfile.mkstemp(prefix="rupy-io-")
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


@app.route("/io-intensive", methods=["POST"])
def io_intensive(request: Request) -> Response:
    file_bytes = temp_file_roundtrip()
    request_id = uuid.uuid4().hex
    with pg() as cur:  # one transaction
        cur.execute(
            "INSERT INTO io_log (request_id, n, note) SELECT %s, g, 'inserted' FROM generate_series(0, 9) AS g",
            (request_id,),
        )
        inserted = cur.rowcount
        cur.execute("UPDATE io_log SET note = 'updated' WHERE request_id = %s AND n < 5", (request_id,))
        updated = cur.rowcount
        cur.execute("DELETE FROM io_log WHERE request_id = %s", (request_id,))
        deleted = cur.rowcount
    return json_response({"file_bytes": file_bytes, "inserted": inserted, "updated": updated, "deleted": deleted})


if __name__ == "__main__":
    pg_init()
    sqlite_init()
    app.run(host=ARGS.host, port=ARGS.port)
