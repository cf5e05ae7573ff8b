"""Tornado app serving the runner scenario contract (apps/README.md), on Tornado's own server.

    python app.py --port PORT --workers N      (defaults: $HOST, $PORT, $WORKERS)

The listening socket is bound once, then tornado.process.fork_processes(N) forks N worker
processes (none when N == 1). Each worker starts its own asyncio loop and creates its own
asyncpg pool (DB_POOL_SIZE connections), aiosqlite connection and blocking sqlite3 connection.
What is not Tornado's own (SQL, SQLite bootstrap, parsing, bodies) comes from the shared kit,
apps/shared/python/appkit.
"""

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import time

import asyncpg
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.process
import tornado.web
import tornado.websocket
from appkit.contract import INT4_MAX, INT4_MIN, SLEEP_S, STREAM_CHUNK, STREAM_CHUNKS, UploadDigest
from appkit.contract import hello_json, item_fields_json, item_json, page, parse_counter_id
from appkit.contract import parse_int, parse_item_id, sleep_json, sum_of_squares
from appkit.contract import temp_file_roundtrip
from appkit.pg import asyncpg_pool, io_log_async
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sql import SQLITE_READ, SQLITE_WRITE
from appkit.sqlite import counter_json, init_sqlite, open_aiosqlite, open_sqlite
from appkit.sqlite import thread_increment_counter, thread_read_counter
from tornado.ioloop import IOLoop

# Per worker process, filled in by worker_main().
state = {}


# ---------------------------------------------------------------- helpers


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
            return item_fields_json(self.request.body, partial)
        except ValueError as e:
            raise tornado.web.HTTPError(400, reason=str(e))


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
        self.send_json(hello_json())


class DbReadHandler(BaseHandler):
    async def get(self):
        item_id = parse_int(self.get_query_argument("id", None))
        if item_id is None:
            return self.send_error_json(400, "id must be an integer")
        if not INT4_MIN <= item_id <= INT4_MAX:
            return self.send_error_json(404, "not found")
        row = await state["pg"].fetchrow(ITEM_GET, item_id)
        if row is None:
            return self.send_error_json(404, "not found")
        self.send_json(item_json(row))


class DbWriteHandler(BaseHandler):
    async def post(self):
        body = self.item_body()
        new_id = await state["pg"].fetchval(ITEM_INSERT_ID, body["name"], body["description"], body["price"])
        self.send_json({"id": new_id}, 201)


@tornado.web.stream_request_body
class UploadHandler(BaseHandler):
    def prepare(self):
        self.digest = UploadDigest()

    def data_received(self, chunk):
        self.digest.update(chunk)

    async def post(self):
        self.send_json(self.digest.json())


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
        self.send_json({"n": count, "result": sum_of_squares(count)})


# ---------------------------------------------------------------- blocking set


class SleepAsyncHandler(BaseHandler):
    async def get(self):
        await asyncio.sleep(SLEEP_S)  # non-blocking
        self.send_json(sleep_json("async"))


class SleepThreadpoolHandler(BaseHandler):
    async def get(self):
        await IOLoop.current().run_in_executor(None, time.sleep, SLEEP_S)  # threadpool
        self.send_json(sleep_json("threadpool"))


class SleepBlockingHandler(BaseHandler):
    async def get(self):
        time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
        self.send_json(sleep_json("blocking"))


class SqliteHandler(BaseHandler):
    def send_counter(self, counter):
        if counter is None:
            return self.send_error_json(404, "not found")
        self.send_json(counter)


class SqliteAsyncRead(SqliteHandler):
    async def get(self, id):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
        self.send_counter(counter_json(rows))


class SqliteAsyncWrite(SqliteHandler):
    async def post(self, id):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
        self.send_counter(counter_json(rows))


class SqliteThreadpoolRead(SqliteHandler):
    async def get(self, id):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        self.send_counter(await IOLoop.current().run_in_executor(None, thread_read_counter, counter_id))


class SqliteThreadpoolWrite(SqliteHandler):
    async def post(self, id):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        self.send_counter(await IOLoop.current().run_in_executor(None, thread_increment_counter, counter_id))


class SqliteBlockingRead(SqliteHandler):
    async def get(self, id):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = state["blocking_sqlite"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
        self.send_counter(counter_json(rows))


class SqliteBlockingWrite(SqliteHandler):
    async def post(self, id):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return self.send_error_json(404, "not found")
        rows = state["blocking_sqlite"].execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
        self.send_counter(counter_json(rows))


# ---------------------------------------------------------------- crud


class HealthHandler(BaseHandler):
    async def get(self):
        self.send_json({"status": "ok"})


class ItemsHandler(BaseHandler):
    async def get(self):
        bounds = page(self.get_query_argument("limit", None), self.get_query_argument("offset", None))
        if bounds is None:
            return self.send_error_json(400, "limit and offset must be non-negative integers")
        rows = await state["pg"].fetch(ITEM_LIST, *bounds)
        self.send_json([item_json(r) for r in rows])

    async def post(self):
        body = self.item_body()
        row = await state["pg"].fetchrow(ITEM_INSERT, body["name"], body["description"], body["price"])
        self.send_json(item_json(row), 201)


class ItemHandler(BaseHandler):
    async def get(self, id):
        item_id = parse_item_id(id)
        if item_id is None:
            return self.send_error_json(404, "not found")
        row = await state["pg"].fetchrow(ITEM_GET, item_id)
        if row is None:
            return self.send_error_json(404, "not found")
        self.send_json(item_json(row))

    async def put(self, id):
        body = self.item_body(partial=True)
        item_id = parse_item_id(id)
        if item_id is None:
            return self.send_error_json(404, "not found")
        row = await state["pg"].fetchrow(
            ITEM_UPDATE, item_id, body.get("name"), body.get("description"), body.get("price")
        )
        if row is None:
            return self.send_error_json(404, "not found")
        self.send_json(item_json(row))


class UpsertHandler(BaseHandler):
    async def post(self):
        body = self.item_body()
        row = await state["pg"].fetchrow(ITEM_UPSERT, body["name"], body["description"], body["price"])
        self.send_json(item_json(row))


# ---------------------------------------------------------------- mixed


class IoIntensiveHandler(BaseHandler):
    async def post(self):
        file_bytes = await IOLoop.current().run_in_executor(None, temp_file_roundtrip)  # file I/O in a thread
        counts = await io_log_async(state["pg"])  # one asyncpg transaction
        self.send_json({"file_bytes": file_bytes, **counts})


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
    state["pg"] = await asyncpg_pool()
    state["aiosqlite"] = await open_aiosqlite()
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
