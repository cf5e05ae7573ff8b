"""Sanic app serving the runner scenario contract (apps/README.md), on Sanic's own server.

Each Sanic worker process runs the before_server_start listener below: it creates its own
asyncpg pool (DB_POOL_SIZE connections), its own aiosqlite connection and its own blocking
sqlite3 connection, and initialises the SQLite counters table. What is not Sanic's own (SQL,
SQLite bootstrap, parsing, bodies) comes from the shared kit, apps/shared/python/appkit.
"""

import asyncio
import time
from email.utils import formatdate

import asyncpg
from appkit.contract import INT4_MAX, INT4_MIN, SLEEP_S, STREAM_CHUNK, STREAM_CHUNKS, UploadDigest
from appkit.contract import hello_json, item_fields, item_json, page, parse_counter_id, parse_int
from appkit.contract import parse_item_id, sleep_json, sum_of_squares, temp_file_roundtrip
from appkit.pg import asyncpg_pool, io_log_async
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sql import SQLITE_READ, SQLITE_WRITE
from appkit.sqlite import counter_json, init_sqlite, open_aiosqlite, open_sqlite
from appkit.sqlite import thread_increment_counter, thread_read_counter
from sanic import Sanic
from sanic.exceptions import BadRequest
from sanic.response import json, text

app = Sanic("bench_sanic")


# ---------------------------------------------------------------- helpers


def error(status, message):
    return json({"error": message}, status=status)


def item_body(request, partial=False):
    """The {name, description, price} JSON body, validated; raises BadRequest."""
    try:
        return item_fields(request.json, partial)
    except ValueError as e:
        raise BadRequest(str(e))


def counter_response(counter):
    if counter is None:
        return error(404, "not found")
    return json(counter)


@app.before_server_start
async def setup(app):
    init_sqlite()
    app.ctx.pg = await asyncpg_pool()
    app.ctx.aiosqlite = await open_aiosqlite()
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
    return json(hello_json())


@app.get("/db-read")
async def db_read(request):
    item_id = parse_int(request.args.get("id"))
    if item_id is None:
        return error(400, "id must be an integer")
    if not INT4_MIN <= item_id <= INT4_MAX:
        return error(404, "not found")
    row = await app.ctx.pg.fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return json(item_json(row))


@app.post("/db-write")
async def db_write(request):
    body = item_body(request)
    new_id = await app.ctx.pg.fetchval(ITEM_INSERT_ID, body["name"], body["description"], body["price"])
    return json({"id": new_id}, status=201)


@app.post("/upload", stream=True)
async def upload(request):
    digest = UploadDigest()
    while True:
        chunk = await request.stream.read()
        if chunk is None:
            break
        digest.update(chunk)
    return json(digest.json())


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
    return json({"n": count, "result": sum_of_squares(count)})


# ---------------------------------------------------------------- blocking set


@app.get("/sleep/async")
async def sleep_async(request):
    await asyncio.sleep(SLEEP_S)  # non-blocking
    return json(sleep_json("async"))


@app.get("/sleep/threadpool")
async def sleep_threadpool(request):
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, SLEEP_S)  # threadpool
    return json(sleep_json("threadpool"))


@app.get("/sleep/blocking")
async def sleep_blocking(request):
    time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
    return json(sleep_json("blocking"))


@app.get("/sqlite/async/read/<id>")
async def sqlite_async_read(request, id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await app.ctx.aiosqlite.execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
    return counter_response(counter_json(rows))


@app.post("/sqlite/async/write/<id>")
async def sqlite_async_write(request, id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await app.ctx.aiosqlite.execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
    return counter_response(counter_json(rows))


@app.get("/sqlite/threadpool/read/<id>")
async def sqlite_threadpool_read(request, id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    counter = await asyncio.get_running_loop().run_in_executor(None, thread_read_counter, counter_id)
    return counter_response(counter)


@app.post("/sqlite/threadpool/write/<id>")
async def sqlite_threadpool_write(request, id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    counter = await asyncio.get_running_loop().run_in_executor(None, thread_increment_counter, counter_id)
    return counter_response(counter)


@app.get("/sqlite/blocking/read/<id>")
async def sqlite_blocking_read(request, id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = app.ctx.blocking_sqlite.execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
    return counter_response(counter_json(rows))


@app.post("/sqlite/blocking/write/<id>")
async def sqlite_blocking_write(request, id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = app.ctx.blocking_sqlite.execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
    return counter_response(counter_json(rows))


# ---------------------------------------------------------------- crud


@app.get("/")
async def health(request):
    return json({"status": "ok"})


@app.get("/items")
async def list_items(request):
    bounds = page(request.args.get("limit"), request.args.get("offset"))
    if bounds is None:
        return error(400, "limit and offset must be non-negative integers")
    rows = await app.ctx.pg.fetch(ITEM_LIST, *bounds)
    return json([item_json(r) for r in rows])


@app.get("/items/<id>")
async def get_item(request, id):
    item_id = parse_item_id(id)
    if item_id is None:
        return error(404, "not found")
    row = await app.ctx.pg.fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return json(item_json(row))


@app.post("/items")
async def create_item(request):
    body = item_body(request)
    row = await app.ctx.pg.fetchrow(ITEM_INSERT, body["name"], body["description"], body["price"])
    return json(item_json(row), status=201)


@app.put("/items/<id>")
async def update_item(request, id):
    body = item_body(request, partial=True)
    item_id = parse_item_id(id)
    if item_id is None:
        return error(404, "not found")
    row = await app.ctx.pg.fetchrow(ITEM_UPDATE, item_id, body.get("name"), body.get("description"), body.get("price"))
    if row is None:
        return error(404, "not found")
    return json(item_json(row))


@app.post("/upsert")
async def upsert(request):
    body = item_body(request)
    row = await app.ctx.pg.fetchrow(ITEM_UPSERT, body["name"], body["description"], body["price"])
    return json(item_json(row))


# ---------------------------------------------------------------- mixed


@app.post("/io-intensive")
async def io_intensive(request):
    file_bytes = await asyncio.get_running_loop().run_in_executor(None, temp_file_roundtrip)  # file I/O in a thread
    counts = await io_log_async(app.ctx.pg)  # one asyncpg transaction
    return json({"file_bytes": file_bytes, **counts})
