"""Tornado app serving the runner scenario contract (apps/README.md), on Tornado's own server.

    python app.py --port PORT --workers N      (defaults: $HOST, $PORT, $WORKERS)

The listening socket is bound once, then tornado.process.fork_processes(N) forks N worker
processes (none when N == 1). Each worker starts its own asyncio loop and creates its own
asyncpg pool (DB_POOL_SIZE connections), aiosqlite connection and blocking sqlite3 connection.
"""

import argparse
import asyncio
import ctypes
import hashlib
import json
import logging
import os
import re
import signal
import sqlite3
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone

import aiosqlite
import asyncpg
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.process
import tornado.web
import tornado.websocket
from tornado.ioloop import IOLoop

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

# Per worker process, filled in by worker_main().
state = {}
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


def item_json(row):
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": float(row["price"]),
        "created_at": row["created_at"].isoformat(),
    }


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


class BaseHandler(tornado.web.RequestHandler):
    def send_json(self, obj, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    def send_error_json(self, status, message):
        self.send_json({"error": message}, status)

    def log_exception(self, typ, value, tb):
        if isinstance(value, asyncpg.UniqueViolationError):
            return  # an expected client error (409), not a server fault
        super().log_exception(typ, value, tb)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, asyncpg.UniqueViolationError):
            self.set_status(409)
            message = "name already exists"
        elif status_code == 404:
            message = "not found"
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def item_body(self, partial=False):
        """The {name, description, price} JSON body, validated; raises HTTPError(400)."""
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise tornado.web.HTTPError(400, reason="body must be JSON")
        if not isinstance(body, dict):
            raise tornado.web.HTTPError(400, reason="body must be a JSON object")
        out = {}
        for key in ("name", "description"):
            if key in body and body[key] is not None:
                if not isinstance(body[key], str):
                    raise tornado.web.HTTPError(400, reason=f"{key} must be a string")
                out[key] = body[key]
        if body.get("price") is not None:
            price = body["price"]
            if isinstance(price, bool) or not isinstance(price, (int, float)):
                raise tornado.web.HTTPError(400, reason="price must be a number")
            out["price"] = float(price)
        if not partial:
            if "name" not in out or "price" not in out:
                raise tornado.web.HTTPError(400, reason="name and price are required")
            out.setdefault("description", "")
        return out


class NotFoundHandler(BaseHandler):
    def prepare(self):
        raise tornado.web.HTTPError(404)


# ---------------------------------------------------------------- core


class PingHandler(BaseHandler):
    async def get(self):
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("pong")


class JsonHandler(BaseHandler):
    async def get(self):
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.send_json({"message": "hello", "ts": ts})


class DbReadHandler(BaseHandler):
    async def get(self):
        item_id = parse_int(self.get_query_argument("id", None))
        if item_id is None:
            return self.send_error_json(400, "id must be an integer")
        if not INT4_MIN <= item_id <= INT4_MAX:
            return self.send_error_json(404, "not found")
        row = await state["pg"].fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
        if row is None:
            return self.send_error_json(404, "not found")
        self.send_json(item_json(row))


class DbWriteHandler(BaseHandler):
    async def post(self):
        body = self.item_body()
        new_id = await state["pg"].fetchval(
            "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING id",
            body["name"],
            body["description"],
            body["price"],
        )
        self.send_json({"id": new_id}, 201)


@tornado.web.stream_request_body
class UploadHandler(BaseHandler):
    def prepare(self):
        self.digest = hashlib.sha256()
        self.size = 0

    def data_received(self, chunk):
        self.digest.update(chunk)
        self.size += len(chunk)

    async def post(self):
        self.send_json({"sha256": self.digest.hexdigest(), "size": self.size})


class StreamHandler(BaseHandler):
    async def get(self):
        self.set_header("Content-Type", "application/octet-stream")
        try:
            for _ in range(STREAM_CHUNKS):
                self.write(STREAM_CHUNK)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            return  # the client went away mid-stream
        self.finish()


class EchoWebSocket(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


class CpuHandler(BaseHandler):
    async def get(self):
        count = parse_int(self.get_query_argument("n", None))
        if count is None or count < 0:
            return self.send_error_json(400, "n must be a non-negative integer")
        total = 0
        for i in range(count):
            total += i * i
        self.send_json({"n": count, "result": total & MASK64})


# ---------------------------------------------------------------- blocking set


def sync_sleep():
    time.sleep(SLEEP_S)  # runs in an executor thread, not on the loop


class SleepAsyncHandler(BaseHandler):
    async def get(self):
        await asyncio.sleep(SLEEP_S)  # non-blocking
        self.send_json({"slept_ms": 50, "mode": "async"})


class SleepThreadpoolHandler(BaseHandler):
    async def get(self):
        await IOLoop.current().run_in_executor(None, sync_sleep)  # threadpool
        self.send_json({"slept_ms": 50, "mode": "threadpool"})


class SleepBlockingHandler(BaseHandler):
    async def get(self):
        time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
        self.send_json({"slept_ms": 50, "mode": "blocking"})


SQLITE_READ = "SELECT id, value FROM counters WHERE id = ?"
# The connections are in autocommit mode, so this one statement is its own transaction: it is
# committed when fetchall() finishes it, and no write lock is ever held across an await (an
# open transaction waiting for a blocked loop would stall every other writer).
SQLITE_WRITE = "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING id, value"


def threadpool_sqlite_read(counter_id):
    return thread_sqlite().execute(SQLITE_READ, (counter_id,)).fetchall()  # sqlite3 in an executor thread


def threadpool_sqlite_write(counter_id):
    return thread_sqlite().execute(SQLITE_WRITE, (counter_id,)).fetchall()  # sqlite3 in an executor thread, commits


class SqliteHandler(BaseHandler):
    def send_counter(self, rows):
        if not rows:
            return self.send_error_json(404, "not found")
        self.send_json({"id": rows[0][0], "value": rows[0][1]})


class SqliteAsyncRead(SqliteHandler):
    async def get(self, id):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
        self.send_counter(rows)


class SqliteAsyncWrite(SqliteHandler):
    async def post(self, id):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
        self.send_counter(rows)


class SqliteThreadpoolRead(SqliteHandler):
    async def get(self, id):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = await IOLoop.current().run_in_executor(None, threadpool_sqlite_read, counter_id)
        self.send_counter(rows)


class SqliteThreadpoolWrite(SqliteHandler):
    async def post(self, id):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = await IOLoop.current().run_in_executor(None, threadpool_sqlite_write, counter_id)
        self.send_counter(rows)


class SqliteBlockingRead(SqliteHandler):
    async def get(self, id):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = state["blocking_sqlite"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
        self.send_counter(rows)


class SqliteBlockingWrite(SqliteHandler):
    async def post(self, id):
        counter_id = sqlite_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = state["blocking_sqlite"].execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
        self.send_counter(rows)


# ---------------------------------------------------------------- crud


class HealthHandler(BaseHandler):
    async def get(self):
        self.send_json({"status": "ok"})


class ItemsHandler(BaseHandler):
    async def get(self):
        limit = self.get_query_argument("limit", None)
        offset = self.get_query_argument("offset", None)
        lim = 10 if limit is None else parse_int(limit)
        off = 0 if offset is None else parse_int(offset)
        if lim is None or off is None or lim < 0 or off < 0:
            return self.send_error_json(400, "limit and offset must be non-negative integers")
        lim = min(lim, 100)
        rows = await state["pg"].fetch(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2", lim, off)
        self.send_json([item_json(r) for r in rows])

    async def post(self):
        body = self.item_body()
        row = await state["pg"].fetchrow(
            f"INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING {ITEM_COLUMNS}",
            body["name"],
            body["description"],
            body["price"],
        )
        self.send_json(item_json(row), 201)


class ItemHandler(BaseHandler):
    async def get(self, id):
        item_id = item_id_of(id)
        if item_id is None:
            return self.send_error_json(404, "not found")
        row = await state["pg"].fetchrow(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1", item_id)
        if row is None:
            return self.send_error_json(404, "not found")
        self.send_json(item_json(row))

    async def put(self, id):
        body = self.item_body(partial=True)
        item_id = item_id_of(id)
        if item_id is None:
            return self.send_error_json(404, "not found")
        row = await state["pg"].fetchrow(
            "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description),"
            f" price = COALESCE($4, price) WHERE id = $1 RETURNING {ITEM_COLUMNS}",
            item_id,
            body.get("name"),
            body.get("description"),
            body.get("price"),
        )
        if row is None:
            return self.send_error_json(404, "not found")
        self.send_json(item_json(row))


class UpsertHandler(BaseHandler):
    async def post(self):
        body = self.item_body()
        row = await state["pg"].fetchrow(
            "INSERT INTO items (name, description, price) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price"
            f" RETURNING {ITEM_COLUMNS}",
            body["name"],
            body["description"],
            body["price"],
        )
        self.send_json(item_json(row))


# ---------------------------------------------------------------- mixed


class IoIntensiveHandler(BaseHandler):
    async def post(self):
        file_bytes = await IOLoop.current().run_in_executor(None, temp_file_roundtrip)  # file I/O in a thread
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
        self.send_json(
            {
                "file_bytes": file_bytes,
                "inserted": int(inserted.split()[-1]),
                "updated": int(updated.split()[-1]),
                "deleted": int(deleted.split()[-1]),
            }
        )


def make_app():
    return tornado.web.Application(
        [
            (r"/ping", PingHandler),
            (r"/json", JsonHandler),
            (r"/db-read", DbReadHandler),
            (r"/db-write", DbWriteHandler),
            (r"/upload", UploadHandler),
            (r"/stream", StreamHandler),
            (r"/ws-echo", EchoWebSocket),
            (r"/cpu", CpuHandler),
            (r"/sleep/async", SleepAsyncHandler),
            (r"/sleep/threadpool", SleepThreadpoolHandler),
            (r"/sleep/blocking", SleepBlockingHandler),
            (r"/sqlite/async/read/([^/]+)", SqliteAsyncRead),
            (r"/sqlite/async/write/([^/]+)", SqliteAsyncWrite),
            (r"/sqlite/threadpool/read/([^/]+)", SqliteThreadpoolRead),
            (r"/sqlite/threadpool/write/([^/]+)", SqliteThreadpoolWrite),
            (r"/sqlite/blocking/read/([^/]+)", SqliteBlockingRead),
            (r"/sqlite/blocking/write/([^/]+)", SqliteBlockingWrite),
            (r"/", HealthHandler),
            (r"/items", ItemsHandler),
            (r"/items/([^/]+)", ItemHandler),
            (r"/upsert", UpsertHandler),
            (r"/io-intensive", IoIntensiveHandler),
        ],
        default_handler_class=NotFoundHandler,
    )


# ---------------------------------------------------------------- processes


async def worker_main(sockets):
    init_sqlite()
    state["pg"] = None
    if DATABASE_URL:
        state["pg"] = await asyncpg.create_pool(DATABASE_URL, min_size=DB_POOL_SIZE, max_size=DB_POOL_SIZE)
    state["aiosqlite"] = await aiosqlite.connect(SQLITE_PATH, timeout=5.0, isolation_level=None)
    state["blocking_sqlite"] = open_sqlite()  # used only on the event-loop thread

    server = tornado.httpserver.HTTPServer(make_app(), xheaders=False)
    server.add_sockets(sockets)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    server.stop()
    await state["aiosqlite"].close()
    state["blocking_sqlite"].close()
    if state["pg"] is not None:
        await state["pg"].close()


def die_with_parent():
    """Linux: a forked worker gets SIGTERM when the supervising parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main():
    logging.getLogger("tornado.access").setLevel(logging.ERROR)  # no per-request 4xx lines on stderr
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))
    args = parser.parse_args()

    sockets = tornado.netutil.bind_sockets(args.port, args.host)
    if args.workers > 1:
        parent = os.getpid()
        # Forks the workers; the parent stays in here, restarting any that die abnormally.
        tornado.process.fork_processes(args.workers)
        die_with_parent()
        if os.getppid() != parent:  # the parent died before prctl took effect
            return
    asyncio.run(worker_main(sockets))


if __name__ == "__main__":
    main()
