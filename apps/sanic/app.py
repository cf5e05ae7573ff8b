"""Sanic app serving the runner scenario contract (apps/README.md), on Sanic's own server.

Each Sanic worker process runs the before_server_start listener below: it creates its own
asyncpg pool (DB_POOL_SIZE connections), its own aiosqlite connection and its own blocking
sqlite3 connection, and initialises the SQLite counters table.
"""

import asyncio
import hashlib
import os
import re
import sqlite3
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from email.utils import formatdate

import aiosqlite
import asyncpg
from sanic import Sanic
from sanic.exceptions import BadRequest
from sanic.response import json, text

DATABASE_URL = os.environ.get("DATABASE_URL")
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
SQLITE_PATH = os.environ.get("SQLITE_PATH", "bench-sqlite.db")

SLEEP_S = 0.05
STREAM_CHUNK = bytes(65536)
STREAM_CHUNKS = 160
IO_FILE_BYTES = 65536
MASK64 = (1 << 64) - 1
INT4_MIN, INT4_MAX = -(1 << 31), (1 << 31) - 1
INT8_MIN, INT8_MAX = -(1 << 63), (1 << 63) - 1
ITEM_COLUMNS = "id, name, description, price, created_at"
_INT_RE = re.compile(r"[+-]?\d+")

app = Sanic("bench_sanic")
_thread_local = threading.local()


# ---------------------------------------------------------------- helpers


def parse_int(value):
    """Strict integer parse: None unless `value` is an optional sign and digits."""
    if value is None or not _INT_RE.fullmatch(value):
        return None
    return int(value)


def item_id_of(value):
    """An items id from a path/query string, or None when it cannot name a row."""
    n = parse_int(value)
    return n if n is not None and INT4_MIN <= n <= INT4_MAX else None


def sqlite_id(value):
    """The counters id in a path, or None when it cannot name a row."""
    n = parse_int(value)
    return n if n is not None and INT8_MIN <= n <= INT8_MAX else None


def error(status, message):
    return json({"error": message}, status=status)


def item_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),
        "created_at": row["created_at"].isoformat(),
    }


def item_body(request, partial=False):
    """The {name, description, price} JSON body, validated; raises BadRequest."""
    body = request.json
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    out = {}
    for key in ("name", "description"):
        if key in body and body[key] is not None:
            if not isinstance(body[key], str):
                raise BadRequest(f"{key} must be a string")
            out[key] = body[key]
    if body.get("price") is not None:
        price = body["price"]
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            raise BadRequest("price must be a number")
        out["price"] = float(price)
    if not partial:
        if "name" not in out or "price" not in out:
            raise BadRequest("name and price are required")
        out.setdefault("description", "")
    return out


def open_sqlite():
    """A stdlib sqlite3 connection: 5 s busy timeout, autocommit (see SQLITE_WRITE)."""
    return sqlite3.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)


def init_sqlite():
    """Create the counters table (safe with several workers doing it at once)."""
    conn = open_sqlite()
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO counters (id, value) VALUES (?, 0)", ((i,) for i in range(1, 2001)))
        conn.execute("COMMIT")
    finally:
        conn.close()


def thread_sqlite():
    """The calling executor thread's own sqlite3 connection."""
    conn = getattr(_thread_local, "conn", None)
    if conn is None:
        conn = open_sqlite()
        _thread_local.conn = conn
    return conn


def temp_file_roundtrip():
    """Writes a per-request 64 KiB temp file, reads it back and deletes it."""
    data = os.urandom(IO_FILE_BYTES)
    fd, path = tempfile.mkstemp(prefix="io-intensive-")
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


@app.before_server_start
async def setup(app):
    init_sqlite()
    app.ctx.pg = None
    if DATABASE_URL:
        app.ctx.pg = await asyncpg.create_pool(DATABASE_URL, min_size=DB_POOL_SIZE, max_size=DB_POOL_SIZE)
    app.ctx.aiosqlite = await aiosqlite.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)
    app.ctx.blocking_sqlite = open_sqlite()  # used only on the event-loop thread


@app.after_server_stop
async def teardown(app):
    await app.ctx.aiosqlite.close()
    app.ctx.blocking_sqlite.close()
    if app.ctx.pg is not None:
        await app.ctx.pg.close()


_date_cache = [0, ""]


@app.on_response
async def add_date_header(request, response):
    """Sanic's server sends no Date header (RFC 9110 wants one); add it, cached per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    response.headers["Date"] = _date_cache[1]


@app.exception(asyncpg.UniqueViolationError)
async def unique_violation(request, exc):
    return error(409, "name already exists")


@app.exception(BadRequest)
async def bad_request(request, exc):
    return error(400, str(exc))


# ---------------------------------------------------------------- core


@app.get("/ping")
async def ping(request):
    return text("pong")


@app.get("/json")
async def json_endpoint(request):
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json({"message": "hello", "ts": ts})


@app.get("/db-read")
async def db_read(request):
    item_id = parse_int(request.args.get("id"))
    if item_id is None:
        return error(400, "id must be an integer")
    if not INT4_MIN <= item_id <= INT4_MAX:
        return error(404, "not found")
    row = await app.ctx.pg.fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        return error(404, "not found")
    return json(item_json(row))


@app.post("/db-write")
async def db_write(request):
    body = item_body(request)
    new_id = await app.ctx.pg.fetchval(
        "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING id",
        body["name"],
        body["description"],
        body["price"],
    )
    return json({"id": new_id}, status=201)


@app.post("/upload", stream=True)
async def upload(request):
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = await request.stream.read()
        if chunk is None:
            break
        digest.update(chunk)
        size += len(chunk)
    return json({"sha256": digest.hexdigest(), "size": size})


@app.get("/stream")
async def stream(request):
    response = await request.respond(content_type="application/octet-stream")
    for _ in range(STREAM_CHUNKS):
        await response.send(STREAM_CHUNK)
    await response.eof()


@app.websocket("/ws-echo")
async def ws_echo(request, ws):
    async for message in ws:
        await ws.send(message)  # str -> text frame, bytes -> binary frame


@app.get("/cpu")
async def cpu(request):
    count = parse_int(request.args.get("n"))
    if count is None or count < 0:
        return error(400, "n must be a non-negative integer")
    total = 0
    for i in range(count):
        total += i * i
    return json({"n": count, "result": total & MASK64})


# ---------------------------------------------------------------- blocking set


def sync_sleep():
    time.sleep(SLEEP_S)  # runs in an executor thread, not on the loop


@app.get("/sleep/async")
async def sleep_async(request):
    await asyncio.sleep(SLEEP_S)  # non-blocking
    return json({"slept_ms": 50, "mode": "async"})


@app.get("/sleep/threadpool")
async def sleep_threadpool(request):
    await asyncio.get_running_loop().run_in_executor(None, sync_sleep)  # threadpool
    return json({"slept_ms": 50, "mode": "threadpool"})


@app.get("/sleep/blocking")
async def sleep_blocking(request):
    time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
    return json({"slept_ms": 50, "mode": "blocking"})


SQLITE_READ = "SELECT id, value FROM counters WHERE id = ?"
# The connections are in autocommit mode, so this one statement is its own transaction: it is
# committed when fetchall() finishes it, and no write lock is ever held across an await (an
# open transaction waiting for a blocked loop would stall every other writer).
SQLITE_WRITE = "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING id, value"


def counter_response(rows):
    if not rows:
        return error(404, "not found")
    return json({"id": rows[0][0], "value": rows[0][1]})


def threadpool_sqlite_read(counter_id):
    return thread_sqlite().execute(SQLITE_READ, (counter_id,)).fetchall()  # sqlite3 in an executor thread


def threadpool_sqlite_write(counter_id):
    return thread_sqlite().execute(SQLITE_WRITE, (counter_id,)).fetchall()  # sqlite3 in an executor thread, commits


@app.get("/sqlite/async/read/<id>")
async def sqlite_async_read(request, id):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await app.ctx.aiosqlite.execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
    return counter_response(rows)


@app.post("/sqlite/async/write/<id>")
async def sqlite_async_write(request, id):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await app.ctx.aiosqlite.execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
    return counter_response(rows)


@app.get("/sqlite/threadpool/read/<id>")
async def sqlite_threadpool_read(request, id):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await asyncio.get_running_loop().run_in_executor(None, threadpool_sqlite_read, counter_id)
    return counter_response(rows)


@app.post("/sqlite/threadpool/write/<id>")
async def sqlite_threadpool_write(request, id):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await asyncio.get_running_loop().run_in_executor(None, threadpool_sqlite_write, counter_id)
    return counter_response(rows)


@app.get("/sqlite/blocking/read/<id>")
async def sqlite_blocking_read(request, id):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = app.ctx.blocking_sqlite.execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
    return counter_response(rows)


@app.post("/sqlite/blocking/write/<id>")
async def sqlite_blocking_write(request, id):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = app.ctx.blocking_sqlite.execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
    return counter_response(rows)


# ---------------------------------------------------------------- crud


@app.get("/")
async def health(request):
    return json({"status": "ok"})


@app.get("/items")
async def list_items(request):
    limit, offset = request.args.get("limit"), request.args.get("offset")
    lim = 10 if limit is None else parse_int(limit)
    off = 0 if offset is None else parse_int(offset)
    if lim is None or off is None or lim < 0 or off < 0:
        return error(400, "limit and offset must be non-negative integers")
    lim = min(lim, 100)
    rows = await app.ctx.pg.fetch(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2", lim, off)
    return json([item_json(r) for r in rows])


@app.get("/items/<id>")
async def get_item(request, id):
    item_id = item_id_of(id)
    if item_id is None:
        return error(404, "not found")
    row = await app.ctx.pg.fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        return error(404, "not found")
    return json(item_json(row))


@app.post("/items")
async def create_item(request):
    body = item_body(request)
    row = await app.ctx.pg.fetchrow(
        f"INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING {ITEM_COLUMNS}",
        body["name"],
        body["description"],
        body["price"],
    )
    return json(item_json(row), status=201)


@app.put("/items/<id>")
async def update_item(request, id):
    body = item_body(request, partial=True)
    item_id = item_id_of(id)
    if item_id is None:
        return error(404, "not found")
    row = await app.ctx.pg.fetchrow(
        "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description),"
        f" price = COALESCE($4, price) WHERE id = $1 RETURNING {ITEM_COLUMNS}",
        item_id,
        body.get("name"),
        body.get("description"),
        body.get("price"),
    )
    if row is None:
        return error(404, "not found")
    return json(item_json(row))


@app.post("/upsert")
async def upsert(request):
    body = item_body(request)
    row = await app.ctx.pg.fetchrow(
        "INSERT INTO items (name, description, price) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price"
        f" RETURNING {ITEM_COLUMNS}",
        body["name"],
        body["description"],
        body["price"],
    )
    return json(item_json(row))


# ---------------------------------------------------------------- mixed


@app.post("/io-intensive")
async def io_intensive(request):
    file_bytes = await asyncio.get_running_loop().run_in_executor(None, temp_file_roundtrip)  # file I/O in a thread
    request_id = uuid.uuid4().hex
    async with app.ctx.pg.acquire() as conn:
        async with conn.transaction():
            inserted = await conn.execute(
                "INSERT INTO io_log (request_id, n, note) SELECT $1, g, 'inserted' FROM generate_series(1, 10) AS g",
                request_id,
            )
            updated = await conn.execute(
                "UPDATE io_log SET note = 'updated' WHERE request_id = $1 AND n <= 5", request_id
            )
            deleted = await conn.execute("DELETE FROM io_log WHERE request_id = $1", request_id)
    return json(
        {
            "file_bytes": file_bytes,
            "inserted": int(inserted.split()[-1]),
            "updated": int(updated.split()[-1]),
            "deleted": int(deleted.split()[-1]),
        }
    )
