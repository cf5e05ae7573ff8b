"""Robyn (0.88) app serving the apps/README.md contract.

Started as `python app.py --port PORT --processes N --workers 1 ...`: Robyn forks N processes
sharing one socket; each process runs its own asyncio (uvloop) event loop for async handlers
and creates its own asyncpg pool and SQLite connections in the startup handler (after fork).
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
from robyn import Headers, Request, Response, Robyn
from robyn.responses import StreamingResponse
from robyn.ws import WebSocketDisconnect

_parser = argparse.ArgumentParser(add_help=False)
_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
ARGS, _ = _parser.parse_known_args()  # Robyn parses --processes/--workers/--log-level itself

DATABASE_URL = os.environ.get("DATABASE_URL")
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
SQLITE_PATH = os.environ.get("SQLITE_PATH", "/tmp/robyn-sqlite.db")

MASK64 = (1 << 64) - 1
STREAM_CHUNK = bytes(65536)
STREAM_CHUNKS = 160
IO_FILE_SIZE = 65536
ITEM_COLUMNS = "id, name, description, price, created_at"

app = Robyn(__file__)

# Per-process state, filled in by the startup handler (which runs in each forked process).
STATE = {"pg": None, "aiosqlite": None, "sqlite_blocking": None}
_sqlite_tls = threading.local()


# ---------------------------------------------------------------- helpers

def json_response(obj, status=200):
    return Response(
        status_code=status,
        headers={"Content-Type": "application/json"},
        description=json.dumps(obj),
    )


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


def body_bytes(request):
    body = request.body
    if isinstance(body, str):  # Robyn hands valid UTF-8 bodies over as str
        return body.encode("utf-8")
    return bytes(body or b"")


def parse_item(request, partial=False):
    """The JSON item body, or None if it is not valid."""
    try:
        data = json.loads(body_bytes(request) or b"null")
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


def counter_response(counter_id, value):
    if value is None:
        return error(404, "not found")
    return json_response({"id": counter_id, "value": value})


# ---------------------------------------------------------------- lifecycle

@app.startup_handler
async def startup():
    if DATABASE_URL:
        STATE["pg"] = await asyncpg.create_pool(DATABASE_URL, min_size=DB_POOL_SIZE, max_size=DB_POOL_SIZE)
    sqlite_init()
    STATE["sqlite_blocking"] = sqlite_connect()
    # Autocommit: each statement commits as it completes inside aiosqlite's thread, so no
    # transaction stays open across event-loop turns.
    STATE["aiosqlite"] = await aiosqlite.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)
    await STATE["aiosqlite"].execute("PRAGMA busy_timeout = 5000")


@app.shutdown_handler
async def shutdown():
    if STATE["pg"] is not None:
        await STATE["pg"].close()
    if STATE["aiosqlite"] is not None:
        await STATE["aiosqlite"].close()


# ---------------------------------------------------------------- core

@app.get("/ping")
async def ping(request: Request):
    return Response(status_code=200, headers={"Content-Type": "text/plain; charset=utf-8"}, description="pong")


@app.get("/json")
async def json_endpoint(request: Request):
    ts = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json_response({"message": "hello", "ts": ts})


@app.get("/db-read")
async def db_read(request: Request):
    item_id = parse_int(request.query_params.get("id", None))
    if item_id is None:
        return error(400, "id must be an integer")
    row = await pg_pool().fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        return error(404, "not found")
    return json_response(item_dict(row))


@app.post("/db-write")
async def db_write(request: Request):
    item = parse_item(request)
    if item is None:
        return error(400, "body must be JSON {name, description, price}")
    try:
        new_id = await pg_pool().fetchval(
            "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING id",
            item["name"], item["description"], item["price"],
        )
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")
    return json_response({"id": new_id}, 201)


@app.post("/upload")
async def upload(request: Request):
    data = body_bytes(request)
    return json_response({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})


def _zero_chunks():
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


@app.get("/stream")
async def stream(request: Request):
    return StreamingResponse(
        _zero_chunks(),
        status_code=200,
        headers=Headers({"Content-Type": "application/octet-stream"}),
        media_type="application/octet-stream",
    )


@app.websocket("/ws-echo")
async def ws_echo(websocket):
    try:
        while True:
            message = await websocket.receive_text()
            await websocket.send_text(message)
    except WebSocketDisconnect:
        pass


@app.get("/cpu")
async def cpu(request: Request):
    n = parse_int(request.query_params.get("n", None))
    if n is None:
        return error(400, "n must be an integer")
    result = 0
    for i in range(n):
        result = (result + i * i) & MASK64
    return json_response({"n": n, "result": result})


# ---------------------------------------------------------------- blocking group

@app.get("/sleep/async")
async def sleep_async(request: Request):
    await asyncio.sleep(0.05)
    return json_response({"slept_ms": 50, "mode": "async"})


@app.get("/sleep/threadpool")
async def sleep_threadpool(request: Request):
    await asyncio.get_running_loop().run_in_executor(None, sleep_sync)
    return json_response({"slept_ms": 50, "mode": "threadpool"})


@app.get("/sleep/blocking")
async def sleep_blocking(request: Request):
    time.sleep(0.05)  # BLOCKING: stalls this process's event loop (the anti-pattern on purpose)
    return json_response({"slept_ms": 50, "mode": "blocking"})


@app.get("/sqlite/async/read/:id")
async def sqlite_async_read(request: Request):
    counter_id = parse_int(request.path_params["id"])
    if counter_id is None:
        return error(400, "id must be an integer")
    rows = await STATE["aiosqlite"].execute_fetchall("SELECT value FROM counters WHERE id = ?", (counter_id,))
    return counter_response(counter_id, rows[0][0] if rows else None)


@app.post("/sqlite/async/write/:id")
async def sqlite_async_write(request: Request):
    counter_id = parse_int(request.path_params["id"])
    if counter_id is None:
        return error(400, "id must be an integer")
    # Autocommit connection: the UPDATE is committed when it completes (before this returns).
    rows = await STATE["aiosqlite"].execute_fetchall(
        "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING value", (counter_id,)
    )
    return counter_response(counter_id, rows[0][0] if rows else None)


@app.get("/sqlite/threadpool/read/:id")
async def sqlite_threadpool_read(request: Request):
    counter_id = parse_int(request.path_params["id"])
    if counter_id is None:
        return error(400, "id must be an integer")
    value = await asyncio.get_running_loop().run_in_executor(
        None, lambda: sqlite_read_sync(sqlite_thread_conn(), counter_id)
    )
    return counter_response(counter_id, value)


@app.post("/sqlite/threadpool/write/:id")
async def sqlite_threadpool_write(request: Request):
    counter_id = parse_int(request.path_params["id"])
    if counter_id is None:
        return error(400, "id must be an integer")
    value = await asyncio.get_running_loop().run_in_executor(
        None, lambda: sqlite_write_sync(sqlite_thread_conn(), counter_id)
    )
    return counter_response(counter_id, value)


@app.get("/sqlite/blocking/read/:id")
async def sqlite_blocking_read(request: Request):
    counter_id = parse_int(request.path_params["id"])
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_read_sync(STATE["sqlite_blocking"], counter_id)  # BLOCKING: sqlite3 on the event loop
    return counter_response(counter_id, value)


@app.post("/sqlite/blocking/write/:id")
async def sqlite_blocking_write(request: Request):
    counter_id = parse_int(request.path_params["id"])
    if counter_id is None:
        return error(400, "id must be an integer")
    value = sqlite_write_sync(STATE["sqlite_blocking"], counter_id)  # BLOCKING: sqlite3 on the event loop
    return counter_response(counter_id, value)


# ---------------------------------------------------------------- crud

@app.get("/")
async def health(request: Request):
    return json_response({"status": "ok"})


@app.get("/items")
async def list_items(request: Request):
    limit = parse_int(request.query_params.get("limit", "10"))
    offset = parse_int(request.query_params.get("offset", "0"))
    if limit is None or offset is None:
        return error(400, "limit and offset must be integers")
    limit = max(0, min(limit, 100))
    offset = max(0, offset)
    rows = await pg_pool().fetch(
        f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2", limit, offset
    )
    return json_response([item_dict(r) for r in rows])


@app.get("/items/:id")
async def get_item(request: Request):
    item_id = parse_int(request.path_params["id"])
    if item_id is None:
        return error(400, "id must be an integer")
    row = await pg_pool().fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        return error(404, "not found")
    return json_response(item_dict(row))


@app.post("/items")
async def create_item(request: Request):
    item = parse_item(request)
    if item is None:
        return error(400, "body must be JSON {name, description, price}")
    try:
        row = await pg_pool().fetchrow(
            f"INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING {ITEM_COLUMNS}",
            item["name"], item["description"], item["price"],
        )
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")
    return json_response(item_dict(row), 201)


@app.put("/items/:id")
async def update_item(request: Request):
    item_id = parse_int(request.path_params["id"])
    if item_id is None:
        return error(400, "id must be an integer")
    item = parse_item(request, partial=True)
    if item is None:
        return error(400, "body must be JSON with any of {name, description, price}")
    try:
        row = await pg_pool().fetchrow(
            "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description),"
            f" price = COALESCE($4, price) WHERE id = $1 RETURNING {ITEM_COLUMNS}",
            item_id, item["name"], item["description"], item["price"],
        )
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")
    if row is None:
        return error(404, "not found")
    return json_response(item_dict(row))


@app.post("/upsert")
async def upsert(request: Request):
    item = parse_item(request)
    if item is None:
        return error(400, "body must be JSON {name, description, price}")
    row = await pg_pool().fetchrow(
        "INSERT INTO items (name, description, price) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price"
        f" RETURNING {ITEM_COLUMNS}",
        item["name"], item["description"], item["price"],
    )
    return json_response(item_dict(row))


# ---------------------------------------------------------------- mixed

def _count(status):
    return int(status.split()[-1])


def temp_file_roundtrip():
    """Writes a per-request 64 KiB temp file, reads it back, deletes it; returns the bytes read."""
    data = os.urandom(IO_FILE_SIZE)
    fd, path = tempfile.mkstemp(prefix="robyn-io-")
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


@app.post("/io-intensive")
async def io_intensive(request: Request):
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
    return json_response({"file_bytes": file_bytes, "inserted": inserted, "updated": updated, "deleted": deleted})


if __name__ == "__main__":
    app.start(host=ARGS.host, port=ARGS.port, _check_port=False)
