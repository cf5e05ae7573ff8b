"""Aquilia app serving the runner scenario contract (apps/README.md), served by uvicorn.

A standalone Aquilia app: one AppManifest (module "bench", mounted at "/") listing the HTTP
controller and the WebSocket controller below, wrapped by AquiliaServer, whose `.app` is the
ASGI application. Each uvicorn worker process runs the manifest's lifecycle startup hook on
ASGI lifespan startup: it creates its own asyncpg pool (DB_POOL_SIZE connections), its own
aiosqlite connection and its own blocking sqlite3 connection, and initialises the SQLite
counters table.
"""

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone

import aiosqlite
import asyncpg
from aquilia import GET, POST, PUT, AquiliaServer, Controller, RequestCtx, Response
from aquilia.manifest import AppManifest, LifecycleConfig
from aquilia.sockets import Connection, Event, Socket, SocketController
from aquilia.sockets.envelope import MessageEnvelope, MessageType

DATABASE_URL = os.environ.get("DATABASE_URL")
DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
SQLITE_PATH = os.environ.get("SQLITE_PATH", "bench-sqlite.db")

SLEEP_S = 0.05
STREAM_CHUNK = bytes(65536)
STREAM_CHUNKS = 160
IO_FILE_BYTES = 65536
MAX_UPLOAD_BYTES = 1 << 30  # Aquilia's Request defaults to a 10 MiB body limit
MASK64 = (1 << 64) - 1
INT4_MIN, INT4_MAX = -(1 << 31), (1 << 31) - 1
INT8_MIN, INT8_MAX = -(1 << 63), (1 << 63) - 1
ITEM_COLUMNS = "id, name, description, price, created_at"
_INT_RE = re.compile(r"[+-]?\d+")

# Per worker process, filled in by the lifecycle startup hook.
state = {}
_thread_local = threading.local()


class BadRequest(Exception):
    pass


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


def json_response(obj, status=200):
    return Response(json.dumps(obj).encode(), status=status, media_type="application/json")


def error(status, message):
    return json_response({"error": message}, status)


NOT_FOUND = {"error": "not found"}


def item_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),
        "created_at": row["created_at"].isoformat(),
    }


async def item_body(request, partial=False):
    """The {name, description, price} JSON body, validated; raises BadRequest."""
    try:
        body = await request.json()
    except Exception:
        raise BadRequest("body must be JSON")
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


class RawTextCodec:
    """WebSocket codec for /ws-echo: a raw frame becomes an "echo" event with the frame's text.

    AquilaSockets decodes every incoming frame with its codec (JSON envelopes by default);
    the echo contract has plain text frames, so the socket runtime gets this codec instead.
    """

    def decode(self, data: bytes) -> MessageEnvelope:
        return MessageEnvelope(type=MessageType.EVENT, event="echo", payload={"text": data.decode("utf-8")})

    def encode(self, envelope: MessageEnvelope) -> bytes:
        return json.dumps(envelope.to_dict()).encode("utf-8")


async def startup(config, container):
    """Lifecycle startup hook (per worker process, on ASGI lifespan startup)."""
    init_sqlite()
    state["pg"] = None
    if DATABASE_URL:
        state["pg"] = await asyncpg.create_pool(DATABASE_URL, min_size=DB_POOL_SIZE, max_size=DB_POOL_SIZE)
    state["aiosqlite"] = await aiosqlite.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)
    state["blocking_sqlite"] = open_sqlite()  # used only on the event-loop thread


async def shutdown(config, container):
    await state["aiosqlite"].close()
    state["blocking_sqlite"].close()
    if state["pg"] is not None:
        await state["pg"].close()


async def unique_or_bad_request(coro):
    """Runs a DB write, mapping a duplicate name to 409 and a bad body to 400."""
    try:
        return await coro
    except BadRequest as e:
        return error(400, str(e))
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")


# ---------------------------------------------------------------- sync work for the executor


def sync_sleep():
    time.sleep(SLEEP_S)  # runs in an executor thread, not on the loop


SQLITE_READ = "SELECT id, value FROM counters WHERE id = ?"
# The connections are in autocommit mode, so this one statement is its own transaction: it is
# committed when fetchall() finishes it, and no write lock is ever held across an await (an
# open transaction waiting for a blocked loop would stall every other writer).
SQLITE_WRITE = "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING id, value"


def threadpool_sqlite_read(counter_id):
    return thread_sqlite().execute(SQLITE_READ, (counter_id,)).fetchall()  # sqlite3 in an executor thread


def threadpool_sqlite_write(counter_id):
    return thread_sqlite().execute(SQLITE_WRITE, (counter_id,)).fetchall()  # sqlite3 in an executor thread, commits


def counter_response(rows):
    if not rows:
        return json_response(NOT_FOUND, 404)
    return json_response({"id": rows[0][0], "value": rows[0][1]})


async def zero_chunks():
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK
        # Let the loop run between chunks: a send into an unpaused transport does not yield,
        # so without this a client that disconnects mid-stream is only noticed after all 160
        # chunks (asyncio then logs "socket.send() raised exception." for each one).
        await asyncio.sleep(0)


# ---------------------------------------------------------------- HTTP controller


class BenchController(Controller):
    prefix = ""
    instantiation_mode = "singleton"

    # ------------------------------------------------------------ core

    @GET("/ping")
    async def ping(self, ctx: RequestCtx):
        return Response.text("pong")

    @GET("/json")
    async def json_endpoint(self, ctx: RequestCtx):
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return json_response({"message": "hello", "ts": ts})

    @GET("/db-read")
    async def db_read(self, ctx: RequestCtx):
        item_id = parse_int(ctx.request.query_param("id"))
        if item_id is None:
            return error(400, "id must be an integer")
        if not INT4_MIN <= item_id <= INT4_MAX:
            return json_response(NOT_FOUND, 404)
        row = await state["pg"].fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
        if row is None:
            return json_response(NOT_FOUND, 404)
        return json_response(item_json(row))

    @POST("/db-write")
    async def db_write(self, ctx: RequestCtx):
        async def write():
            body = await item_body(ctx.request)
            new_id = await state["pg"].fetchval(
                "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING id",
                body["name"],
                body["description"],
                body["price"],
            )
            return json_response({"id": new_id}, 201)

        return await unique_or_bad_request(write())

    @POST("/upload")
    async def upload(self, ctx: RequestCtx):
        request = ctx.request
        request.max_body_size = MAX_UPLOAD_BYTES
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
        return json_response({"sha256": digest.hexdigest(), "size": size})

    @GET("/stream")
    async def stream(self, ctx: RequestCtx):
        return Response.stream(zero_chunks(), media_type="application/octet-stream")

    @GET("/cpu")
    async def cpu(self, ctx: RequestCtx):
        count = parse_int(ctx.request.query_param("n"))
        if count is None or count < 0:
            return error(400, "n must be a non-negative integer")
        total = 0
        for i in range(count):
            total += i * i
        return json_response({"n": count, "result": total & MASK64})

    # ------------------------------------------------------------ blocking set

    @GET("/sleep/async")
    async def sleep_async(self, ctx: RequestCtx):
        await asyncio.sleep(SLEEP_S)  # non-blocking
        return json_response({"slept_ms": 50, "mode": "async"})

    @GET("/sleep/threadpool")
    async def sleep_threadpool(self, ctx: RequestCtx):
        await asyncio.get_running_loop().run_in_executor(None, sync_sleep)  # threadpool
        return json_response({"slept_ms": 50, "mode": "threadpool"})

    @GET("/sleep/blocking")
    async def sleep_blocking(self, ctx: RequestCtx):
        time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
        return json_response({"slept_ms": 50, "mode": "blocking"})

    @GET("/sqlite/async/read/{id}")
    async def sqlite_async_read(self, ctx: RequestCtx, id: str):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
        return counter_response(rows)

    @POST("/sqlite/async/write/{id}")
    async def sqlite_async_write(self, ctx: RequestCtx, id: str):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
        return counter_response(rows)

    @GET("/sqlite/threadpool/read/{id}")
    async def sqlite_threadpool_read(self, ctx: RequestCtx, id: str):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = await asyncio.get_running_loop().run_in_executor(None, threadpool_sqlite_read, counter_id)
        return counter_response(rows)

    @POST("/sqlite/threadpool/write/{id}")
    async def sqlite_threadpool_write(self, ctx: RequestCtx, id: str):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = await asyncio.get_running_loop().run_in_executor(None, threadpool_sqlite_write, counter_id)
        return counter_response(rows)

    @GET("/sqlite/blocking/read/{id}")
    async def sqlite_blocking_read(self, ctx: RequestCtx, id: str):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = state["blocking_sqlite"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
        return counter_response(rows)

    @POST("/sqlite/blocking/write/{id}")
    async def sqlite_blocking_write(self, ctx: RequestCtx, id: str):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = state["blocking_sqlite"].execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
        return counter_response(rows)

    # ------------------------------------------------------------ crud

    @GET("/")
    async def health(self, ctx: RequestCtx):
        return json_response({"status": "ok"})

    @GET("/items")
    async def list_items(self, ctx: RequestCtx):
        limit, offset = ctx.request.query_param("limit"), ctx.request.query_param("offset")
        lim = 10 if limit is None else parse_int(limit)
        off = 0 if offset is None else parse_int(offset)
        if lim is None or off is None or lim < 0 or off < 0:
            return error(400, "limit and offset must be non-negative integers")
        lim = min(lim, 100)
        rows = await state["pg"].fetch(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2", lim, off)
        return json_response([item_json(r) for r in rows])

    @GET("/items/{id}")
    async def get_item(self, ctx: RequestCtx, id: str):
        item_id = item_id_of(id)
        if item_id is None:
            return json_response(NOT_FOUND, 404)
        row = await state["pg"].fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
        if row is None:
            return json_response(NOT_FOUND, 404)
        return json_response(item_json(row))

    @POST("/items")
    async def create_item(self, ctx: RequestCtx):
        async def create():
            body = await item_body(ctx.request)
            row = await state["pg"].fetchrow(
                f"INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING {ITEM_COLUMNS}",
                body["name"],
                body["description"],
                body["price"],
            )
            return json_response(item_json(row), 201)

        return await unique_or_bad_request(create())

    @PUT("/items/{id}")
    async def update_item(self, ctx: RequestCtx, id: str):
        async def update():
            body = await item_body(ctx.request, partial=True)
            item_id = item_id_of(id)
            if item_id is None:
                return json_response(NOT_FOUND, 404)
            row = await state["pg"].fetchrow(
                "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description),"
                f" price = COALESCE($4, price) WHERE id = $1 RETURNING {ITEM_COLUMNS}",
                item_id,
                body.get("name"),
                body.get("description"),
                body.get("price"),
            )
            if row is None:
                return json_response(NOT_FOUND, 404)
            return json_response(item_json(row))

        return await unique_or_bad_request(update())

    @POST("/upsert")
    async def upsert(self, ctx: RequestCtx):
        async def upsert():
            body = await item_body(ctx.request)
            row = await state["pg"].fetchrow(
                "INSERT INTO items (name, description, price) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price"
                f" RETURNING {ITEM_COLUMNS}",
                body["name"],
                body["description"],
                body["price"],
            )
            return json_response(item_json(row))

        return await unique_or_bad_request(upsert())

    # ------------------------------------------------------------ mixed

    @POST("/io-intensive")
    async def io_intensive(self, ctx: RequestCtx):
        file_bytes = await asyncio.get_running_loop().run_in_executor(None, temp_file_roundtrip)  # file I/O in a thread
        request_id = uuid.uuid4().hex
        async with state["pg"].acquire() as conn:
            async with conn.transaction():
                inserted = await conn.execute(
                    "INSERT INTO io_log (request_id, n, note) SELECT $1, g, 'inserted' FROM generate_series(1, 10) AS g",
                    request_id,
                )
                updated = await conn.execute(
                    "UPDATE io_log SET note = 'updated' WHERE request_id = $1 AND n <= 5", request_id
                )
                deleted = await conn.execute("DELETE FROM io_log WHERE request_id = $1", request_id)
        return json_response(
            {
                "file_bytes": file_bytes,
                "inserted": int(inserted.split()[-1]),
                "updated": int(updated.split()[-1]),
                "deleted": int(deleted.split()[-1]),
            }
        )


# ---------------------------------------------------------------- WebSocket controller


@Socket("/ws-echo", max_message_size=1 << 20)
class EchoSocket(SocketController):
    @Event("echo")
    async def echo(self, conn: Connection, payload):
        await conn.send_raw(payload["text"].encode("utf-8"))  # sent back as a text frame


# ---------------------------------------------------------------- app

manifest = AppManifest(
    name="bench",
    version="1.0.0",
    description="runner benchmark contract",
    controllers=["app:BenchController"],
    socket_controllers=["app:EchoSocket"],
    lifecycle=LifecycleConfig(on_startup="app:startup", on_shutdown="app:shutdown"),
    auto_discover=False,
)
server = AquiliaServer(manifests=[manifest], workspace_modules={"bench": {"route_prefix": "/"}})
server.aquila_sockets.codec = RawTextCodec()  # /ws-echo speaks raw text frames, not JSON envelopes
app = server.app
