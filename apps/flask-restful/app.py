"""Flask-RESTful app serving the apps/ contract (see apps/README.md), run by gunicorn sync
workers. Endpoints are flask_restful Resources; JSON bodies are parsed with reqparse.

Each gunicorn worker is a forked process that handles one request at a time. Every
per-process resource (the PostgreSQL pool, the SQLite connection) is opened in the
process that uses it and re-opened if the process id changes, so nothing is shared across
a fork. What is not Flask-RESTful's own (SQL, SQLite bootstrap, the pool, parsing,
bodies) comes from the shared kit, apps/shared/python/appkit.
"""

import time

import psycopg2.errors
from appkit.contract import MODES, SLEEP_S, STREAM_BYTES, UploadDigest, hello_json, item_json, page
from appkit.contract import parse_counter_id, parse_int, sleep_json, sum_of_squares
from appkit.contract import temp_file_roundtrip, zero_chunks
from appkit.pg import PsycopgPool, io_log
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sqlite import increment_counter, process_sqlite, read_counter
from flask import Flask, Response, request
from flask_restful import Api, Resource, reqparse
from werkzeug.exceptions import HTTPException

# PostgreSQL: a psycopg2 pool per worker process, opened on first use.
PG = PsycopgPool()

# SQLite: one connection per worker process. gunicorn (without --preload) imports this module
# in each worker after the fork: this is the worker start.
process_sqlite()


# --- helpers ---------------------------------------------------------------------------


def error(message, status):
    return {"error": message}, status


def counter_response(counter):
    if counter is None:
        return error("not found", 404)
    return counter


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def non_empty_str(value, name=None, op=None):
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def string(value, name=None, op=None):
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def number(value, name=None, op=None):
    if not is_number(value):
        raise ValueError("must be a number")
    return float(value)


def item_parser(create):
    """reqparse for {name, description, price}: all required but description on create;
    on update only the fields present are returned."""
    parser = reqparse.RequestParser(bundle_errors=True)
    missing = {} if create else {"store_missing": False}
    parser.add_argument("name", type=non_empty_str, required=create, location="json", **missing)
    parser.add_argument(
        "description", type=string, default="", location="json", **missing
    )
    parser.add_argument("price", type=number, required=create, location="json", **missing)
    return parser


CREATE_PARSER = item_parser(create=True)
UPDATE_PARSER = item_parser(create=False)


class BenchApi(Api):
    """Errors as {"error": ...} (flask-restful's default is {"message": ...})."""

    def handle_error(self, e):
        if not isinstance(e, HTTPException) or e.code is None or e.code < 400:
            raise e  # falls back to Flask's own handling (500 for unexpected exceptions)
        message = e.name.lower()
        data = getattr(e, "data", None)
        if isinstance(data, dict) and "message" in data:
            detail = data["message"]
            if isinstance(detail, dict):
                detail = "; ".join(f"{k}: {v}" for k, v in detail.items())
            message = str(detail)
        headers = {}
        allow = e.get_response().headers.get("Allow")
        if allow:
            headers["Allow"] = allow
        return self.make_response({"error": message}, e.code, headers)


app = Flask(__name__)
api = BenchApi(app)


@app.errorhandler(HTTPException)
def http_error(e):
    """Errors outside the Api's resources (e.g. an unknown path)."""
    if e.code is None or e.code < 400:
        return e
    resp = e.get_response()
    resp.set_data(app.json.dumps({"error": e.name.lower()}))
    resp.mimetype = "application/json"
    return resp


# --- core ------------------------------------------------------------------------------


class Ping(Resource):
    def get(self):
        return Response("pong", mimetype="text/plain")


class Json(Resource):
    def get(self):
        return hello_json()


class DbRead(Resource):
    def get(self):
        item_id = parse_int(request.args.get("id"))
        if item_id is None:
            return error("id must be an integer", 400)
        row = PG.fetchrow(ITEM_GET, item_id)
        if row is None:
            return error("not found", 404)
        return item_json(row, zulu=True)


class DbWrite(Resource):
    def post(self):
        fields = CREATE_PARSER.parse_args()
        try:
            new_id = PG.fetchrow(ITEM_INSERT_ID, fields["name"], fields["description"], fields["price"])[0]
        except psycopg2.errors.UniqueViolation:
            return error("name already exists", 409)
        return {"id": new_id}, 201


class Upload(Resource):
    def post(self):
        return UploadDigest().read_from(request.stream).json()


class Stream(Resource):
    def get(self):
        return Response(
            zero_chunks(),
            mimetype="application/octet-stream",
            headers={"Content-Length": str(STREAM_BYTES)},
        )


class Cpu(Resource):
    def get(self):
        n = parse_int(request.args.get("n"))
        if n is None:
            return error("n must be an integer", 400)
        return {"n": n, "result": sum_of_squares(n)}


# --- blocking: a sync framework serves all three variants with plain sync handlers ------


class Sleep(Resource):
    def get(self, mode):
        if mode not in MODES:
            return error("not found", 404)
        time.sleep(SLEEP_S)
        return sleep_json(mode)


class SqliteRead(Resource):
    def get(self, mode, item_id):
        counter_id = parse_counter_id(item_id)
        if mode not in MODES or counter_id is None:
            return error("not found", 404)
        return counter_response(read_counter(process_sqlite(), counter_id))


class SqliteWrite(Resource):
    def post(self, mode, item_id):
        counter_id = parse_counter_id(item_id)
        if mode not in MODES or counter_id is None:
            return error("not found", 404)
        return counter_response(increment_counter(process_sqlite(), counter_id))


# --- crud ------------------------------------------------------------------------------


class Health(Resource):
    def get(self):
        return {"status": "ok"}


class ItemList(Resource):
    def get(self):
        bounds = page(request.args.get("limit"), request.args.get("offset"))
        if bounds is None:
            return error("limit and offset must be non-negative integers", 400)
        rows = PG.fetch(ITEM_LIST, *bounds)
        return [item_json(r, zulu=True) for r in rows]

    def post(self):
        fields = CREATE_PARSER.parse_args()
        try:
            row = PG.fetchrow(ITEM_INSERT, fields["name"], fields["description"], fields["price"])
        except psycopg2.errors.UniqueViolation:
            return error("name already exists", 409)
        return item_json(row, zulu=True), 201


class Item(Resource):
    def get(self, item_id):
        item_id = parse_int(item_id)
        if item_id is None:
            return error("not found", 404)
        row = PG.fetchrow(ITEM_GET, item_id)
        if row is None:
            return error("not found", 404)
        return item_json(row, zulu=True)

    def put(self, item_id):
        item_id = parse_int(item_id)
        if item_id is None:
            return error("not found", 404)
        fields = UPDATE_PARSER.parse_args()
        try:
            row = PG.fetchrow(ITEM_UPDATE, item_id, fields.get("name"), fields.get("description"), fields.get("price"))
        except psycopg2.errors.UniqueViolation:
            return error("name already exists", 409)
        if row is None:
            return error("not found", 404)
        return item_json(row, zulu=True)


class Upsert(Resource):
    def post(self):
        fields = CREATE_PARSER.parse_args()
        row = PG.fetchrow(ITEM_UPSERT, fields["name"], fields["description"], fields["price"])
        return item_json(row, zulu=True)


# --- mixed -----------------------------------------------------------------------------


class IoIntensive(Resource):
    def post(self):
        file_bytes = temp_file_roundtrip()  # plain blocking file calls in the sync worker
        with PG.cursor(transaction=True) as cur:
            counts = io_log(cur)
        return {"file_bytes": file_bytes, **counts}


api.add_resource(Ping, "/ping")
api.add_resource(Json, "/json")
api.add_resource(DbRead, "/db-read")
api.add_resource(DbWrite, "/db-write")
api.add_resource(Upload, "/upload")
api.add_resource(Stream, "/stream")
api.add_resource(Cpu, "/cpu")
api.add_resource(Sleep, "/sleep/<mode>")
api.add_resource(SqliteRead, "/sqlite/<mode>/read/<item_id>")
api.add_resource(SqliteWrite, "/sqlite/<mode>/write/<item_id>")
api.add_resource(Health, "/")
api.add_resource(ItemList, "/items")
api.add_resource(Item, "/items/<item_id>")
api.add_resource(Upsert, "/upsert")
api.add_resource(IoIntensive, "/io-intensive")
