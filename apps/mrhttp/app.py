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
The router ignores `methods` (one handler per path). What is not mrhttp's own (SQL, SQLite
bootstrap, parsing, bodies) comes from the shared kit, apps/shared/python/appkit.
"""

import argparse
import asyncio
import json
import os
import time

import mrhttp
from appkit.contract import SLEEP_S, UploadDigest, hello_json, parse_counter_id, sleep_json
from appkit.contract import temp_file_roundtrip
from appkit.pg import asyncpg_pool, io_log_async
from appkit.sql import SQLITE_READ, SQLITE_WRITE
from appkit.sqlite import counter_json, init_sqlite, open_aiosqlite, open_sqlite
from appkit.sqlite import thread_increment_counter, thread_read_counter

_parser = argparse.ArgumentParser()
_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
_parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))

app = mrhttp.Application()

# Per-worker state, filled in by the at_start listener (runs in each forked worker).
STATE = {"pg": None, "aiosqlite": None, "sqlite_blocking": None}


# ---------------------------------------------------------------- helpers

def dumps(obj):
    return json.dumps(obj)


def http_error(status):
    """mrhttp's only way to answer with a non-200 status (fixed HTML body)."""
    return mrhttp.HTTPError(status)


def require_method(request, *methods):
    if request.method not in methods:
        raise http_error(405)


def counter_body(counter):
    if counter is None:
        raise http_error(404)
    return dumps(counter)


def counter_id_or_400(raw):
    counter_id = parse_counter_id(raw)
    if counter_id is None:
        raise http_error(400)
    return counter_id


# ---------------------------------------------------------------- lifecycle

@app.on("at_start")
async def worker_start():
    STATE["pg"] = await asyncpg_pool()
    init_sqlite()
    STATE["sqlite_blocking"] = open_sqlite()
    # Autocommit: each statement commits as it completes inside aiosqlite's thread, so no
    # transaction stays open across event-loop turns. Its thread is a daemon: mrhttp's
    # shutdown path (at_end) is skipped when a second SIGTERM (the parent forwards one) stops
    # the loop early, and a live non-daemon thread would then keep the worker from exiting.
    STATE["aiosqlite"] = await open_aiosqlite()


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
    return dumps(hello_json())


# GET /db-read?id=N, GET /cpu?n=N: not served (need the query string, see above).
# POST /db-write: not served (needs 201 Created).


@app.route("/upload", methods=["POST"], _type="json")
def upload(request):
    require_method(request, "POST")
    digest = UploadDigest()
    digest.update(request.body or b"")
    return dumps(digest.json())


# GET /stream: not served (unsupported, see app.toml): mrhttp 0.13 cannot stream and has no
# application/octet-stream response type.


# ---------------------------------------------------------------- blocking group

@app.route("/sleep/async", _type="json")
async def sleep_async(request):
    await asyncio.sleep(SLEEP_S)
    return dumps(sleep_json("async"))


@app.route("/sleep/threadpool", _type="json")
async def sleep_threadpool(request):
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, SLEEP_S)
    return dumps(sleep_json("threadpool"))


@app.route("/sleep/blocking", _type="json")
async def sleep_blocking(request):
    time.sleep(SLEEP_S)  # BLOCKING: stalls this worker's event loop (the anti-pattern on purpose)
    return dumps(sleep_json("blocking"))


@app.route("/sqlite/async/read/{}", _type="json")
async def sqlite_async_read(request, raw_id):
    counter_id = counter_id_or_400(raw_id)
    rows = await STATE["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))
    return counter_body(counter_json(rows))


@app.route("/sqlite/async/write/{}", methods=["POST"], _type="json")
async def sqlite_async_write(request, raw_id):
    require_method(request, "POST")
    counter_id = counter_id_or_400(raw_id)
    # Autocommit connection: the UPDATE is committed when it completes (before this returns).
    rows = await STATE["aiosqlite"].execute_fetchall(SQLITE_WRITE, (counter_id,))
    return counter_body(counter_json(rows))


@app.route("/sqlite/threadpool/read/{}", _type="json")
async def sqlite_threadpool_read(request, raw_id):
    counter_id = counter_id_or_400(raw_id)
    counter = await asyncio.get_running_loop().run_in_executor(None, thread_read_counter, counter_id)
    return counter_body(counter)


@app.route("/sqlite/threadpool/write/{}", methods=["POST"], _type="json")
async def sqlite_threadpool_write(request, raw_id):
    require_method(request, "POST")
    counter_id = counter_id_or_400(raw_id)
    counter = await asyncio.get_running_loop().run_in_executor(None, thread_increment_counter, counter_id)
    return counter_body(counter)


@app.route("/sqlite/blocking/read/{}", _type="json")
async def sqlite_blocking_read(request, raw_id):
    counter_id = counter_id_or_400(raw_id)
    rows = STATE["sqlite_blocking"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING: sqlite3 on the event loop
    return counter_body(counter_json(rows))


@app.route("/sqlite/blocking/write/{}", methods=["POST"], _type="json")
async def sqlite_blocking_write(request, raw_id):
    require_method(request, "POST")
    counter_id = counter_id_or_400(raw_id)
    rows = STATE["sqlite_blocking"].execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING: sqlite3 on the event loop
    return counter_body(counter_json(rows))


# ---------------------------------------------------------------- crud: only the health route
# (the crud scenario is unsupported: no PUT, no 201, no query string for /items?limit&offset).

@app.route("/", _type="json")
def health(request):
    return dumps({"status": "ok"})


# ---------------------------------------------------------------- mixed

@app.route("/io-intensive", methods=["POST"], _type="json")
async def io_intensive(request):
    require_method(request, "POST")
    file_bytes = await asyncio.get_running_loop().run_in_executor(None, temp_file_roundtrip)  # file I/O in a worker thread
    counts = await io_log_async(STATE["pg"])  # one asyncpg transaction
    return dumps({"file_bytes": file_bytes, **counts})


if __name__ == "__main__":
    ARGS = _parser.parse_args()
    app.run(host=ARGS.host, port=ARGS.port, cores=max(1, ARGS.workers))
