"""FastAPI app serving the runner scenario contract (apps/README.md), served by uvicorn.

Each uvicorn worker process runs the lifespan below: it creates its own asyncpg pool
(DB_POOL_SIZE connections), its own aiosqlite connection and its own blocking sqlite3
connection, and initialises the SQLite counters table.
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
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Optional

import aiosqlite
import asyncpg
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

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

state = {}
_thread_local = threading.local()


# ---------------------------------------------------------------- helpers


def parse_int(value):
    """Strict integer parse: None unless `value` is an optional sign and digits."""
    if value is None or not _INT_RE.fullmatch(value):
        return None
    return int(value)


def sqlite_id(value):
    """The counters id in a path, or None when it cannot name a row."""
    n = parse_int(value)
    return n if n is not None and INT8_MIN <= n <= INT8_MAX else None


def error(status, message):
    return JSONResponse({"error": message}, status_code=status)


def item_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),
        "created_at": row["created_at"].isoformat(),
    }


def pg_pool():
    return state.get("pg")


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
    """The calling threadpool thread's own sqlite3 connection."""
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


@asynccontextmanager
async def lifespan(app):
    init_sqlite()
    if DATABASE_URL:
        state["pg"] = await asyncpg.create_pool(DATABASE_URL, min_size=DB_POOL_SIZE, max_size=DB_POOL_SIZE)
    state["aiosqlite"] = await aiosqlite.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)
    state["blocking_sqlite"] = open_sqlite()  # used only on the event-loop thread
    try:
        yield
    finally:
        await state["aiosqlite"].close()
        state["blocking_sqlite"].close()
        if state.get("pg") is not None:
            await state["pg"].close()


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(RequestValidationError)
async def validation_error(request, exc):
    return error(400, "invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))


@app.exception_handler(asyncpg.UniqueViolationError)
async def unique_violation(request, exc):
    return error(409, "name already exists")


class ItemIn(BaseModel):
    name: str
    description: str = ""
    price: float


class ItemPatch(BaseModel):
    name: Optional[str] = None
    description: Optional[str] = None
    price: Optional[float] = None


# ---------------------------------------------------------------- core


@app.get("/ping")
async def ping():
    return PlainTextResponse("pong")


@app.get("/json")
async def json_endpoint():
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"message": "hello", "ts": ts}


@app.get("/db-read")
async def db_read(id: Optional[str] = None):
    item_id = parse_int(id)
    if item_id is None:
        return error(400, "id must be an integer")
    if not INT4_MIN <= item_id <= INT4_MAX:
        return error(404, "not found")
    row = await pg_pool().fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        return error(404, "not found")
    return item_json(row)


@app.post("/db-write", status_code=201)
async def db_write(body: ItemIn):
    new_id = await pg_pool().fetchval(
        "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING id",
        body.name,
        body.description,
        body.price,
    )
    return {"id": new_id}


@app.post("/upload")
async def upload(request: Request):
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


async def zero_chunks():
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK
        # Let the loop run between chunks: a send into an unpaused transport does not yield,
        # so without this a client that disconnects mid-stream is only noticed after all 160
        # chunks (asyncio then logs "socket.send() raised exception." for each one).
        await asyncio.sleep(0)


@app.get("/stream")
async def stream():
    return StreamingResponse(zero_chunks(), media_type="application/octet-stream")


@app.websocket("/ws-echo")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


@app.get("/cpu")
async def cpu(n: Optional[str] = None):
    count = parse_int(n)
    if count is None or count < 0:
        return error(400, "n must be a non-negative integer")
    total = 0
    for i in range(count):
        total += i * i
    return {"n": count, "result": total & MASK64}


# ---------------------------------------------------------------- blocking set


@app.get("/sleep/async")
async def sleep_async():
    await asyncio.sleep(SLEEP_S)  # non-blocking
    return {"slept_ms": 50, "mode": "async"}


@app.get("/sleep/threadpool")
def sleep_threadpool():  # sync handler: FastAPI runs it in its threadpool
    time.sleep(SLEEP_S)  # blocks a threadpool thread, not the loop
    return {"slept_ms": 50, "mode": "threadpool"}


@app.get("/sleep/blocking")
async def sleep_blocking():
    time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
    return {"slept_ms": 50, "mode": "blocking"}


SQLITE_READ = "SELECT id, value FROM counters WHERE id = ?"
# The connections are in autocommit mode, so this one statement is its own transaction: it is
# committed when fetchall() finishes it, and no write lock is ever held across an await (an
# open transaction waiting for a blocked loop would stall every other writer).
SQLITE_WRITE = "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING id, value"


@app.get("/sqlite/async/read/{id}")
async def sqlite_async_read(id: str):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await state["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
    if not rows:
        return error(404, "not found")
    return {"id": rows[0][0], "value": rows[0][1]}


@app.post("/sqlite/async/write/{id}")
async def sqlite_async_write(id: str):
    db = state["aiosqlite"]
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await db.execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
    if not rows:
        return error(404, "not found")
    return {"id": rows[0][0], "value": rows[0][1]}


@app.get("/sqlite/threadpool/read/{id}")
def sqlite_threadpool_read(id: str):  # sync handler: runs in FastAPI's threadpool
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = thread_sqlite().execute(SQLITE_READ, (counter_id,)).fetchall()  # sqlite3 in a threadpool thread
    if not rows:
        return error(404, "not found")
    return {"id": rows[0][0], "value": rows[0][1]}


@app.post("/sqlite/threadpool/write/{id}")
def sqlite_threadpool_write(id: str):  # sync handler: runs in FastAPI's threadpool
    conn = thread_sqlite()
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = conn.execute(SQLITE_WRITE, (counter_id,)).fetchall()  # sqlite3 in a threadpool thread, commits
    if not rows:
        return error(404, "not found")
    return {"id": rows[0][0], "value": rows[0][1]}


@app.get("/sqlite/blocking/read/{id}")
async def sqlite_blocking_read(id: str):
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = state["blocking_sqlite"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
    if not rows:
        return error(404, "not found")
    return {"id": rows[0][0], "value": rows[0][1]}


@app.post("/sqlite/blocking/write/{id}")
async def sqlite_blocking_write(id: str):
    conn = state["blocking_sqlite"]
    counter_id = sqlite_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = conn.execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
    if not rows:
        return error(404, "not found")
    return {"id": rows[0][0], "value": rows[0][1]}


# ---------------------------------------------------------------- crud


@app.get("/")
async def health():
    return {"status": "ok"}


@app.get("/items")
async def list_items(limit: Optional[str] = None, offset: Optional[str] = None):
    lim = 10 if limit is None else parse_int(limit)
    off = 0 if offset is None else parse_int(offset)
    if lim is None or off is None or lim < 0 or off < 0:
        return error(400, "limit and offset must be non-negative integers")
    lim = min(lim, 100)
    rows = await pg_pool().fetch(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2", lim, off)
    return [item_json(r) for r in rows]


@app.get("/items/{id}")
async def get_item(id: str):
    item_id = parse_int(id)
    if item_id is None or not INT4_MIN <= item_id <= INT4_MAX:
        return error(404, "not found")
    row = await pg_pool().fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
    if row is None:
        return error(404, "not found")
    return item_json(row)


@app.post("/items", status_code=201)
async def create_item(body: ItemIn):
    row = await pg_pool().fetchrow(
        f"INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING {ITEM_COLUMNS}",
        body.name,
        body.description,
        body.price,
    )
    return item_json(row)


@app.put("/items/{id}")
async def update_item(id: str, body: ItemPatch):
    item_id = parse_int(id)
    if item_id is None or not INT4_MIN <= item_id <= INT4_MAX:
        return error(404, "not found")
    row = await pg_pool().fetchrow(
        "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description),"
        f" price = COALESCE($4, price) WHERE id = $1 RETURNING {ITEM_COLUMNS}",
        item_id,
        body.name,
        body.description,
        body.price,
    )
    if row is None:
        return error(404, "not found")
    return item_json(row)


@app.post("/upsert")
async def upsert(body: ItemIn):
    row = await pg_pool().fetchrow(
        "INSERT INTO items (name, description, price) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price"
        f" RETURNING {ITEM_COLUMNS}",
        body.name,
        body.description,
        body.price,
    )
    return item_json(row)


# ---------------------------------------------------------------- mixed


@app.post("/io-intensive")
async def io_intensive():
    file_bytes = await run_in_threadpool(temp_file_roundtrip)  # file I/O in a worker thread
    request_id = uuid.uuid4().hex
    async with pg_pool().acquire() as conn:
        async with conn.transaction():
            inserted = await conn.execute(
                "INSERT INTO io_log (request_id, n, note) SELECT $1, g, 'inserted' FROM generate_series(1, 10) AS g",
                request_id,
            )
            updated = await conn.execute(
                "UPDATE io_log SET note = 'updated' WHERE request_id = $1 AND n <= 5", request_id
            )
            deleted = await conn.execute("DELETE FROM io_log WHERE request_id = $1", request_id)
    return {
        "file_bytes": file_bytes,
        "inserted": int(inserted.split()[-1]),
        "updated": int(updated.split()[-1]),
        "deleted": int(deleted.split()[-1]),
    }
