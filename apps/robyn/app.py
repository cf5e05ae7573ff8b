"""Robyn (0.88) app serving the apps/README.md contract.

Started as `python app.py --port PORT --processes N --workers 1 ...`: Robyn forks N processes
sharing one socket; each process runs its own asyncio (uvloop) event loop for async handlers
and creates its own asyncpg pool and SQLite connections in the startup handler (after fork).
What is not Robyn's own (SQL, SQLite bootstrap, parsing, bodies) comes from the shared kit,
apps/shared/python/appkit.
"""

import argparse
import asyncio
import json
import os
import time

import asyncpg
from appkit.contract import SLEEP_S, UploadDigest, hello_json, item_fields_json, item_json, page
from appkit.contract import parse_counter_id, parse_int, sleep_json, sum_of_squares
from appkit.contract import temp_file_roundtrip, zero_chunks
from appkit.pg import asyncpg_pool, io_log_async
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sql import SQLITE_READ, SQLITE_WRITE
from appkit.sqlite import counter_json, init_sqlite, open_aiosqlite, open_sqlite
from appkit.sqlite import thread_increment_counter, thread_read_counter
from robyn import Headers, Request, Response, Robyn
from robyn.responses import StreamingResponse
from robyn.ws import WebSocketDisconnect

_parser = argparse.ArgumentParser(add_help=False)
_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
ARGS, _ = _parser.parse_known_args()  # Robyn parses --processes/--workers/--log-level itself

app = Robyn(__file__)

# Per-process state, filled in by the startup handler (which runs in each forked process).
STATE = {"pg": None, "aiosqlite": None, "sqlite_blocking": None}


# ---------------------------------------------------------------- helpers

def json_response(obj, status=200):
    return Response(
        status_code=status,
        headers={"Content-Type": "application/json"},
        description=json.dumps(obj),
    )


def error(status, message):
    return json_response({"error": message}, status)


def body_bytes(request):
    body = request.body
    if isinstance(body, str):  # Robyn hands valid UTF-8 bodies over as str
        return body.encode("utf-8")
    return bytes(body or b"")


def counter_id_of(request):
    return parse_counter_id(request.path_params["id"])


def counter_response(counter):
    if counter is None:
        return error(404, "not found")
    return json_response(counter)


# ---------------------------------------------------------------- lifecycle

@app.startup_handler
async def startup():
    STATE["pg"] = await asyncpg_pool()
    init_sqlite()
    STATE["sqlite_blocking"] = open_sqlite()
    # Autocommit: each statement commits as it completes inside aiosqlite's thread, so no
    # transaction stays open across event-loop turns.
    STATE["aiosqlite"] = await open_aiosqlite()


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
    return json_response(hello_json())


@app.get("/db-read")
async def db_read(request: Request):
    item_id = parse_int(request.query_params.get("id", None))
    if item_id is None:
        return error(400, "id must be an integer")
    row = await STATE["pg"].fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return json_response(item_json(row))


@app.post("/db-write")
async def db_write(request: Request):
    try:
        item = item_fields_json(body_bytes(request))
    except ValueError:
        return error(400, "body must be JSON {name, description, price}")
    try:
        new_id = await STATE["pg"].fetchval(ITEM_INSERT_ID, item["name"], item["description"], item["price"])
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")
    return json_response({"id": new_id}, 201)


@app.post("/upload")
async def upload(request: Request):
    digest = UploadDigest()
    digest.update(body_bytes(request))
    return json_response(digest.json())


@app.get("/stream")
async def stream(request: Request):
    return StreamingResponse(
        zero_chunks(),
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
    return json_response({"n": n, "result": sum_of_squares(n)})


# ---------------------------------------------------------------- blocking group

@app.get("/sleep/async")
async def sleep_async(request: Request):
    await asyncio.sleep(SLEEP_S)
    return json_response(sleep_json("async"))


@app.get("/sleep/threadpool")
async def sleep_threadpool(request: Request):
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, SLEEP_S)
    return json_response(sleep_json("threadpool"))


@app.get("/sleep/blocking")
async def sleep_blocking(request: Request):
    time.sleep(SLEEP_S)  # BLOCKING: stalls this process's event loop (the anti-pattern on purpose)
    return json_response(sleep_json("blocking"))


@app.get("/sqlite/async/read/:id")
async def sqlite_async_read(request: Request):
    counter_id = counter_id_of(request)
    if counter_id is None:
        return error(400, "id must be an integer")
    rows = await STATE["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))
    return counter_response(counter_json(rows))


@app.post("/sqlite/async/write/:id")
async def sqlite_async_write(request: Request):
    counter_id = counter_id_of(request)
    if counter_id is None:
        return error(400, "id must be an integer")
    # Autocommit connection: the UPDATE is committed when it completes (before this returns).
    rows = await STATE["aiosqlite"].execute_fetchall(SQLITE_WRITE, (counter_id,))
    return counter_response(counter_json(rows))


@app.get("/sqlite/threadpool/read/:id")
async def sqlite_threadpool_read(request: Request):
    counter_id = counter_id_of(request)
    if counter_id is None:
        return error(400, "id must be an integer")
    counter = await asyncio.get_running_loop().run_in_executor(None, thread_read_counter, counter_id)
    return counter_response(counter)


@app.post("/sqlite/threadpool/write/:id")
async def sqlite_threadpool_write(request: Request):
    counter_id = counter_id_of(request)
    if counter_id is None:
        return error(400, "id must be an integer")
    counter = await asyncio.get_running_loop().run_in_executor(None, thread_increment_counter, counter_id)
    return counter_response(counter)


@app.get("/sqlite/blocking/read/:id")
async def sqlite_blocking_read(request: Request):
    counter_id = counter_id_of(request)
    if counter_id is None:
        return error(400, "id must be an integer")
    rows = STATE["sqlite_blocking"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING: sqlite3 on the event loop
    return counter_response(counter_json(rows))


@app.post("/sqlite/blocking/write/:id")
async def sqlite_blocking_write(request: Request):
    counter_id = counter_id_of(request)
    if counter_id is None:
        return error(400, "id must be an integer")
    rows = STATE["sqlite_blocking"].execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING: sqlite3 on the event loop
    return counter_response(counter_json(rows))


# ---------------------------------------------------------------- crud

@app.get("/")
async def health(request: Request):
    return json_response({"status": "ok"})


@app.get("/items")
async def list_items(request: Request):
    bounds = page(request.query_params.get("limit", None), request.query_params.get("offset", None))
    if bounds is None:
        return error(400, "limit and offset must be non-negative integers")
    rows = await STATE["pg"].fetch(ITEM_LIST, *bounds)
    return json_response([item_json(r) for r in rows])


@app.get("/items/:id")
async def get_item(request: Request):
    item_id = parse_int(request.path_params["id"])
    if item_id is None:
        return error(400, "id must be an integer")
    row = await STATE["pg"].fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return json_response(item_json(row))


@app.post("/items")
async def create_item(request: Request):
    try:
        item = item_fields_json(body_bytes(request))
    except ValueError:
        return error(400, "body must be JSON {name, description, price}")
    try:
        row = await STATE["pg"].fetchrow(ITEM_INSERT, item["name"], item["description"], item["price"])
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")
    return json_response(item_json(row), 201)


@app.put("/items/:id")
async def update_item(request: Request):
    item_id = parse_int(request.path_params["id"])
    if item_id is None:
        return error(400, "id must be an integer")
    try:
        item = item_fields_json(body_bytes(request), partial=True)
    except ValueError:
        return error(400, "body must be JSON with any of {name, description, price}")
    try:
        row = await STATE["pg"].fetchrow(
            ITEM_UPDATE, item_id, item.get("name"), item.get("description"), item.get("price")
        )
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")
    if row is None:
        return error(404, "not found")
    return json_response(item_json(row))


@app.post("/upsert")
async def upsert(request: Request):
    try:
        item = item_fields_json(body_bytes(request))
    except ValueError:
        return error(400, "body must be JSON {name, description, price}")
    row = await STATE["pg"].fetchrow(ITEM_UPSERT, item["name"], item["description"], item["price"])
    return json_response(item_json(row))


# ---------------------------------------------------------------- mixed

@app.post("/io-intensive")
async def io_intensive(request: Request):
    file_bytes = await asyncio.get_running_loop().run_in_executor(None, temp_file_roundtrip)  # file I/O in a worker thread
    counts = await io_log_async(STATE["pg"])  # one asyncpg transaction
    return json_response({"file_bytes": file_bytes, **counts})


if __name__ == "__main__":
    app.start(host=ARGS.host, port=ARGS.port, _check_port=False)
