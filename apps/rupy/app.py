"""rupy-api (0.3.2) app serving the apps/README.md contract.

Rupy runs one process: an Axum/hyper server on a multi-threaded tokio runtime that calls the
(sync) Python handlers directly on its worker threads, holding the GIL while Python runs.
`--threads N` sets TOKIO_WORKER_THREADS before the runtime is built, so N handlers can be in
flight at once (they overlap only while they wait with the GIL released: sleep, DB, SQLite).
rupy-api has no async handlers, no raw request bytes, no streaming and no WebSockets; see app.toml.
What is not rupy's own (SQL, SQLite bootstrap, parsing, bodies) comes from the shared kit,
apps/shared/python/appkit.
"""

import argparse
import json
import os
import time

_parser = argparse.ArgumentParser()
_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
_parser.add_argument("--threads", type=int, default=int(os.environ.get("WORKERS", "1")))
ARGS = _parser.parse_args()
# tokio reads this when rupy builds its multi-threaded runtime inside app.run().
os.environ["TOKIO_WORKER_THREADS"] = str(max(1, ARGS.threads))

import psycopg2.errors  # noqa: E402
from appkit.contract import SLEEP_S, STREAM_BYTES, hello_json, item_fields_json  # noqa: E402
from appkit.contract import item_json, page, parse_counter_id, parse_int, sleep_json  # noqa: E402
from appkit.contract import sum_of_squares, temp_file_roundtrip  # noqa: E402
from appkit.pg import PsycopgPool, io_log  # noqa: E402
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE  # noqa: E402
from appkit.sql import ITEM_UPSERT  # noqa: E402
from appkit.sqlite import init_sqlite, thread_increment_counter, thread_read_counter  # noqa: E402
from rupy import Request, Response, Rupy  # noqa: E402

# Rupy response bodies are Python str (sent UTF-8 encoded); U+0000 encodes to one 0x00 byte.
STREAM_BODY = "\x00" * STREAM_BYTES

app = Rupy()

# PostgreSQL: one psycopg2 pool for the process, DB_POOL_SIZE connections shared by the tokio
# worker threads (a thread waits for a free one). SQLite: one sqlite3 connection per thread.
PG = PsycopgPool()


# ---------------------------------------------------------------- helpers

def json_response(obj, status=200):
    resp = Response(json.dumps(obj), status=status)
    resp.set_header("Content-Type", "application/json")
    return resp


def error(status, message):
    return json_response({"error": message}, status)


def counter_response(counter):
    if counter is None:
        return error(404, "not found")
    return json_response(counter)


# ---------------------------------------------------------------- core

@app.route("/ping", methods=["GET"])
def ping(request: Request) -> Response:
    resp = Response("pong")
    resp.set_header("Content-Type", "text/plain; charset=utf-8")
    return resp


@app.route("/json", methods=["GET"])
def json_endpoint(request: Request) -> Response:
    return json_response(hello_json())


@app.route("/db-read", methods=["GET"])
def db_read(request: Request) -> Response:
    item_id = parse_int(request.get_query_param("id"))
    if item_id is None:
        return error(400, "id must be an integer")
    row = PG.fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return json_response(item_json(row))


@app.route("/db-write", methods=["POST"])
def db_write(request: Request) -> Response:
    try:
        item = item_fields_json(request.body or "")
    except ValueError:
        return error(400, "body must be JSON {name, description, price}")
    try:
        new_id = PG.fetchrow(ITEM_INSERT_ID, item["name"], item["description"], item["price"])[0]
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
    return json_response({"n": n, "result": sum_of_squares(n)})


# ---------------------------------------------------------------- blocking group
# rupy-api has only sync handlers, each run on a tokio worker thread: all three variants of each
# pair are the same plain blocking call (as for Flask); see [notes] in app.toml.

@app.route("/sleep/async", methods=["GET"])
def sleep_async(request: Request) -> Response:
    time.sleep(SLEEP_S)  # BLOCKING: no async handlers in rupy; blocks this tokio worker thread
    return json_response(sleep_json("async"))


@app.route("/sleep/threadpool", methods=["GET"])
def sleep_threadpool(request: Request) -> Response:
    time.sleep(SLEEP_S)  # BLOCKING: the sync handler itself runs on a tokio worker thread
    return json_response(sleep_json("threadpool"))


@app.route("/sleep/blocking", methods=["GET"])
def sleep_blocking(request: Request) -> Response:
    time.sleep(SLEEP_S)  # BLOCKING: blocks this tokio worker thread
    return json_response(sleep_json("blocking"))


def sqlite_read(id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    # BLOCKING: stdlib sqlite3 on this tokio worker thread (one connection per thread); the
    # async variant too, as there is no event loop for aiosqlite.
    return counter_response(thread_read_counter(counter_id))


def sqlite_write(id):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(400, "id must be an integer")
    # BLOCKING: as sqlite_read, and commits.
    return counter_response(thread_increment_counter(counter_id))


@app.route("/sqlite/async/read/<id>", methods=["GET"])
def sqlite_async_read(request: Request, id: str) -> Response:
    return sqlite_read(id)


@app.route("/sqlite/async/write/<id>", methods=["POST"])
def sqlite_async_write(request: Request, id: str) -> Response:
    return sqlite_write(id)


@app.route("/sqlite/threadpool/read/<id>", methods=["GET"])
def sqlite_threadpool_read(request: Request, id: str) -> Response:
    return sqlite_read(id)


@app.route("/sqlite/threadpool/write/<id>", methods=["POST"])
def sqlite_threadpool_write(request: Request, id: str) -> Response:
    return sqlite_write(id)


@app.route("/sqlite/blocking/read/<id>", methods=["GET"])
def sqlite_blocking_read(request: Request, id: str) -> Response:
    return sqlite_read(id)


@app.route("/sqlite/blocking/write/<id>", methods=["POST"])
def sqlite_blocking_write(request: Request, id: str) -> Response:
    return sqlite_write(id)


# ---------------------------------------------------------------- crud

@app.route("/", methods=["GET"])
def health(request: Request) -> Response:
    return json_response({"status": "ok"})


@app.route("/items", methods=["GET"])
def list_items(request: Request) -> Response:
    params = request.query_params
    bounds = page(params.get("limit"), params.get("offset"))
    if bounds is None:
        return error(400, "limit and offset must be non-negative integers")
    rows = PG.fetch(ITEM_LIST, *bounds)
    return json_response([item_json(r) for r in rows])


@app.route("/items", methods=["POST"])
def create_item(request: Request) -> Response:
    try:
        item = item_fields_json(request.body or "")
    except ValueError:
        return error(400, "body must be JSON {name, description, price}")
    try:
        row = PG.fetchrow(ITEM_INSERT, item["name"], item["description"], item["price"])
    except psycopg2.errors.UniqueViolation:
        return error(409, "name already exists")
    return json_response(item_json(row), 201)


@app.route("/items/<id>", methods=["GET"])
def get_item(request: Request, id: str) -> Response:
    item_id = parse_int(id)
    if item_id is None:
        return error(400, "id must be an integer")
    row = PG.fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return json_response(item_json(row))


@app.route("/items/<id>", methods=["PUT"])
def update_item(request: Request, id: str) -> Response:
    item_id = parse_int(id)
    if item_id is None:
        return error(400, "id must be an integer")
    try:
        item = item_fields_json(request.body or "", partial=True)
    except ValueError:
        return error(400, "body must be JSON with any of {name, description, price}")
    try:
        row = PG.fetchrow(ITEM_UPDATE, item_id, item.get("name"), item.get("description"), item.get("price"))
    except psycopg2.errors.UniqueViolation:
        return error(409, "name already exists")
    if row is None:
        return error(404, "not found")
    return json_response(item_json(row))


@app.route("/upsert", methods=["POST"])
def upsert(request: Request) -> Response:
    try:
        item = item_fields_json(request.body or "")
    except ValueError:
        return error(400, "body must be JSON {name, description, price}")
    row = PG.fetchrow(ITEM_UPSERT, item["name"], item["description"], item["price"])
    return json_response(item_json(row))


# ---------------------------------------------------------------- mixed

@app.route("/io-intensive", methods=["POST"])
def io_intensive(request: Request) -> Response:
    file_bytes = temp_file_roundtrip()  # BLOCKING file calls on this tokio worker thread
    with PG.cursor(transaction=True) as cur:
        counts = io_log(cur)
    return json_response({"file_bytes": file_bytes, **counts})


if __name__ == "__main__":
    init_sqlite()
    app.run(host=ARGS.host, port=ARGS.port)
