"""Flask app serving the apps/ contract (see apps/README.md), run by gunicorn sync workers.

Each gunicorn worker is a forked process that handles one request at a time. Every
per-process resource (the PostgreSQL pool, the SQLite connection) is opened in the process
that uses it and re-opened if the process id changes, so nothing is shared across a fork.
What is not Flask's own (SQL, SQLite bootstrap, the pool, parsing, bodies) comes from the
shared kit, apps/shared/python/appkit.
"""

import time

import psycopg2.errors
from appkit.contract import MODES, SLEEP_S, STREAM_BYTES, UploadDigest, hello_json, item_fields
from appkit.contract import item_json, page, parse_counter_id, parse_int, sleep_json, sum_of_squares
from appkit.contract import temp_file_roundtrip, zero_chunks
from appkit.pg import PsycopgPool, io_log
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sqlite import increment_counter, process_sqlite, read_counter
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

app = Flask(__name__)

# PostgreSQL: a psycopg2 pool per worker process, opened on first use.
PG = PsycopgPool()

# SQLite: one connection per worker process. gunicorn (without --preload) imports this module
# in each worker after the fork: this is the worker start.
process_sqlite()


# --- helpers ---------------------------------------------------------------------------


def error(message, status):
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


def item_body(partial=False):
    """The {name, description, price} fields of the JSON body: (fields, None) or (None, error)."""
    try:
        return item_fields(request.get_json(force=True, silent=True), partial), None
    except ValueError as e:
        return None, str(e)


def counter_response(counter):
    if counter is None:
        return error("not found", 404)
    return jsonify(counter)


@app.errorhandler(HTTPException)
def http_error(e):
    if e.code is None or e.code < 400:
        return e  # e.g. a routing redirect: keep it as is
    resp = e.get_response()  # keeps headers such as Allow
    resp.set_data(app.json.dumps({"error": e.name.lower()}))
    resp.mimetype = "application/json"
    return resp


# --- core ------------------------------------------------------------------------------


@app.get("/ping")
def ping():
    return Response("pong", mimetype="text/plain")


@app.get("/json")
def json_endpoint():
    return jsonify(hello_json())


@app.get("/db-read")
def db_read():
    item_id = parse_int(request.args.get("id"))
    if item_id is None:
        return error("id must be an integer", 400)
    row = PG.fetchrow(ITEM_GET, item_id)
    if row is None:
        return error("not found", 404)
    return jsonify(item_json(row, zulu=True))


@app.post("/db-write")
def db_write():
    fields, err = item_body()
    if err:
        return error(err, 400)
    try:
        new_id = PG.fetchrow(ITEM_INSERT_ID, fields["name"], fields["description"], fields["price"])[0]
    except psycopg2.errors.UniqueViolation:
        return error("name already exists", 409)
    return jsonify({"id": new_id}), 201


@app.post("/upload")
def upload():
    return jsonify(UploadDigest().read_from(request.stream).json())


@app.get("/stream")
def stream():
    return Response(
        zero_chunks(),
        mimetype="application/octet-stream",
        headers={"Content-Length": str(STREAM_BYTES)},
    )


@app.get("/cpu")
def cpu():
    n = parse_int(request.args.get("n"))
    if n is None:
        return error("n must be an integer", 400)
    return jsonify({"n": n, "result": sum_of_squares(n)})


# --- blocking: a sync framework serves all three variants with plain sync handlers ------


@app.get("/sleep/<mode>")
def sleep(mode):
    if mode not in MODES:
        return error("not found", 404)
    time.sleep(SLEEP_S)
    return jsonify(sleep_json(mode))


@app.get("/sqlite/<mode>/read/<item_id>")
def sqlite_read(mode, item_id):
    counter_id = parse_counter_id(item_id)
    if mode not in MODES or counter_id is None:
        return error("not found", 404)
    return counter_response(read_counter(process_sqlite(), counter_id))


@app.post("/sqlite/<mode>/write/<item_id>")
def sqlite_write(mode, item_id):
    counter_id = parse_counter_id(item_id)
    if mode not in MODES or counter_id is None:
        return error("not found", 404)
    return counter_response(increment_counter(process_sqlite(), counter_id))


# --- crud ------------------------------------------------------------------------------


@app.get("/")
def health():
    return jsonify({"status": "ok"})


@app.get("/items")
def list_items():
    bounds = page(request.args.get("limit"), request.args.get("offset"))
    if bounds is None:
        return error("limit and offset must be non-negative integers", 400)
    rows = PG.fetch(ITEM_LIST, *bounds)
    return jsonify([item_json(r, zulu=True) for r in rows])


@app.get("/items/<item_id>")
def get_item(item_id):
    item_id = parse_int(item_id)
    if item_id is None:
        return error("not found", 404)
    row = PG.fetchrow(ITEM_GET, item_id)
    if row is None:
        return error("not found", 404)
    return jsonify(item_json(row, zulu=True))


@app.post("/items")
def create_item():
    fields, err = item_body()
    if err:
        return error(err, 400)
    try:
        row = PG.fetchrow(ITEM_INSERT, fields["name"], fields["description"], fields["price"])
    except psycopg2.errors.UniqueViolation:
        return error("name already exists", 409)
    return jsonify(item_json(row, zulu=True)), 201


@app.put("/items/<item_id>")
def update_item(item_id):
    item_id = parse_int(item_id)
    if item_id is None:
        return error("not found", 404)
    fields, err = item_body(partial=True)
    if err:
        return error(err, 400)
    try:
        row = PG.fetchrow(ITEM_UPDATE, item_id, fields.get("name"), fields.get("description"), fields.get("price"))
    except psycopg2.errors.UniqueViolation:
        return error("name already exists", 409)
    if row is None:
        return error("not found", 404)
    return jsonify(item_json(row, zulu=True))


@app.post("/upsert")
def upsert():
    fields, err = item_body()
    if err:
        return error(err, 400)
    row = PG.fetchrow(ITEM_UPSERT, fields["name"], fields["description"], fields["price"])
    return jsonify(item_json(row, zulu=True))


# --- mixed -----------------------------------------------------------------------------


@app.post("/io-intensive")
def io_intensive():
    file_bytes = temp_file_roundtrip()  # plain blocking file calls in the sync worker
    with PG.cursor(transaction=True) as cur:
        counts = io_log(cur)
    return jsonify({"file_bytes": file_bytes, **counts})
