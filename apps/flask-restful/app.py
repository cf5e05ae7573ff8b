"""Flask-RESTful app serving the apps/ contract (see apps/README.md), run by gunicorn sync
workers. Endpoints are flask_restful Resources; JSON bodies are parsed with reqparse.

Each gunicorn worker is a forked process that handles one request at a time. Every
per-process resource (the PostgreSQL pool, the SQLite connection) is opened lazily in the
process that uses it and re-opened if the process id changes, so nothing is shared across
a fork.
"""

import hashlib
import os
import re
import sqlite3
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import psycopg2
import psycopg2.errors
import psycopg2.pool
from flask import Flask, Response, request
from flask_restful import Api, Resource, reqparse
from werkzeug.exceptions import HTTPException

DATABASE_URL = os.environ.get("DATABASE_URL")
DB_POOL_SIZE = max(1, int(os.environ.get("DB_POOL_SIZE") or 1))
SQLITE_PATH = os.environ.get("SQLITE_PATH") or os.path.join(
    tempfile.gettempdir(), "flask-restful-bench-sqlite.db"
)

STREAM_CHUNK = bytes(65536)
STREAM_CHUNKS = 160  # 160 * 65536 = 10485760
IO_FILE_BYTES = 65536
U64_MASK = (1 << 64) - 1
INT_RE = re.compile(r"-?[0-9]+")
ITEM_COLUMNS = "id, name, description, price, created_at"


# --- PostgreSQL: a lazily opened pool per worker process -------------------------------

_pg_pool = None
_pg_pool_pid = None
_pg_inherited = []  # pools inherited across a fork: kept referenced, never closed here


def pg_pool():
    global _pg_pool, _pg_pool_pid
    pid = os.getpid()
    if _pg_pool is None or _pg_pool_pid != pid:
        if _pg_pool is not None:
            _pg_inherited.append(_pg_pool)
        if not DATABASE_URL:
            raise RuntimeError("DATABASE_URL is not set")
        _pg_pool = psycopg2.pool.SimpleConnectionPool(
            1, DB_POOL_SIZE, DATABASE_URL, options="-c timezone=UTC"
        )
        _pg_pool_pid = pid
    return _pg_pool


@contextmanager
def pg_cursor(transaction=False):
    """A cursor on a pooled connection: autocommit, or one transaction committed on exit."""
    pool = pg_pool()
    conn = pool.getconn()
    ok = False
    try:
        conn.autocommit = not transaction
        with conn.cursor() as cur:
            yield cur
        if transaction:
            conn.commit()
        ok = True
    finally:
        if not ok and not conn.closed:
            try:
                conn.rollback()
            except psycopg2.Error:
                pass
        pool.putconn(conn, close=bool(conn.closed))


# --- SQLite: one connection per worker process, opened at worker start -----------------

_sqlite = None
_sqlite_pid = None


def _open_sqlite():
    directory = os.path.dirname(os.path.abspath(SQLITE_PATH))
    os.makedirs(directory, exist_ok=True)
    last_error = None
    for attempt in range(20):
        conn = None
        try:
            conn = sqlite3.connect(
                SQLITE_PATH, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters "
                "(id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"
            )
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR IGNORE INTO counters (id, value) VALUES (?, 0)",
                ((i,) for i in range(1, 2001)),
            )
            conn.execute("COMMIT")
            return conn
        except sqlite3.OperationalError as e:  # e.g. locked by another worker starting
            last_error = e
            if conn is not None:
                conn.close()
            time.sleep(0.05 * (attempt + 1))
    raise last_error


def sqlite_conn():
    global _sqlite, _sqlite_pid
    pid = os.getpid()
    if _sqlite is None or _sqlite_pid != pid:
        _sqlite = _open_sqlite()
        _sqlite_pid = pid
    return _sqlite


# gunicorn (without --preload) imports this module in each worker after the fork: this is
# the worker start.
sqlite_conn()


# --- helpers ---------------------------------------------------------------------------


def error(message, status):
    return {"error": message}, status


def iso(dt):
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def item_json(row):
    return {
        "id": row[0],
        "name": row[1],
        "description": row[2],
        "price": float(row[3]),
        "created_at": iso(row[4]),
    }


def parse_int(text):
    if text is None or not INT_RE.fullmatch(text):
        return None
    return int(text)


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
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"message": "hello", "ts": ts}


class DbRead(Resource):
    def get(self):
        item_id = parse_int(request.args.get("id"))
        if item_id is None:
            return error("id must be an integer", 400)
        with pg_cursor() as cur:
            cur.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = %s", (item_id,))
            row = cur.fetchone()
        if row is None:
            return error("not found", 404)
        return item_json(row)


class DbWrite(Resource):
    def post(self):
        fields = CREATE_PARSER.parse_args()
        try:
            with pg_cursor() as cur:
                cur.execute(
                    "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
                    "RETURNING id",
                    (fields["name"], fields["description"], fields["price"]),
                )
                new_id = cur.fetchone()[0]
        except psycopg2.errors.UniqueViolation:
            return error("name already exists", 409)
        return {"id": new_id}, 201


class Upload(Resource):
    def post(self):
        digest = hashlib.sha256()
        size = 0
        stream = request.stream
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
        return {"sha256": digest.hexdigest(), "size": size}


def zero_chunks():
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


class Stream(Resource):
    def get(self):
        return Response(
            zero_chunks(),
            mimetype="application/octet-stream",
            headers={"Content-Length": str(STREAM_CHUNKS * len(STREAM_CHUNK))},
        )


class Cpu(Resource):
    def get(self):
        n = parse_int(request.args.get("n"))
        if n is None:
            return error("n must be an integer", 400)
        total = 0
        for i in range(n):
            total += i * i
        return {"n": n, "result": total & U64_MASK}


# --- blocking: a sync framework serves all three variants with plain sync handlers ------

SLEEP_MODES = ("async", "threadpool", "blocking")


class Sleep(Resource):
    def get(self, mode):
        if mode not in SLEEP_MODES:
            return error("not found", 404)
        time.sleep(0.05)
        return {"slept_ms": 50, "mode": mode}


class SqliteRead(Resource):
    def get(self, mode, item_id):
        item_id = parse_int(item_id)
        if mode not in SLEEP_MODES or item_id is None:
            return error("not found", 404)
        row = (
            sqlite_conn()
            .execute("SELECT value FROM counters WHERE id = ?", (item_id,))
            .fetchone()
        )
        if row is None:
            return error("not found", 404)
        return {"id": item_id, "value": row[0]}


class SqliteWrite(Resource):
    def post(self, mode, item_id):
        item_id = parse_int(item_id)
        if mode not in SLEEP_MODES or item_id is None:
            return error("not found", 404)
        conn = sqlite_conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("UPDATE counters SET value = value + 1 WHERE id = ?", (item_id,))
            if cur.rowcount == 0:
                conn.execute("ROLLBACK")
                return error("not found", 404)
            value = conn.execute(
                "SELECT value FROM counters WHERE id = ?", (item_id,)
            ).fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return {"id": item_id, "value": value}


# --- crud ------------------------------------------------------------------------------


class Health(Resource):
    def get(self):
        return {"status": "ok"}


class ItemList(Resource):
    def get(self):
        limit_arg = request.args.get("limit")
        offset_arg = request.args.get("offset")
        limit = 10 if limit_arg is None else parse_int(limit_arg)
        offset = 0 if offset_arg is None else parse_int(offset_arg)
        if limit is None or offset is None or limit < 0 or offset < 0:
            return error("limit and offset must be non-negative integers", 400)
        limit = min(limit, 100)
        with pg_cursor() as cur:
            cur.execute(
                f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT %s OFFSET %s",
                (limit, offset),
            )
            rows = cur.fetchall()
        return [item_json(r) for r in rows]

    def post(self):
        fields = CREATE_PARSER.parse_args()
        try:
            with pg_cursor() as cur:
                cur.execute(
                    "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
                    f"RETURNING {ITEM_COLUMNS}",
                    (fields["name"], fields["description"], fields["price"]),
                )
                row = cur.fetchone()
        except psycopg2.errors.UniqueViolation:
            return error("name already exists", 409)
        return item_json(row), 201


class Item(Resource):
    def get(self, item_id):
        item_id = parse_int(item_id)
        if item_id is None:
            return error("not found", 404)
        with pg_cursor() as cur:
            cur.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = %s", (item_id,))
            row = cur.fetchone()
        if row is None:
            return error("not found", 404)
        return item_json(row)

    def put(self, item_id):
        item_id = parse_int(item_id)
        if item_id is None:
            return error("not found", 404)
        fields = dict(UPDATE_PARSER.parse_args())
        try:
            with pg_cursor() as cur:
                if fields:
                    assignments = ", ".join(f"{column} = %s" for column in fields)
                    cur.execute(
                        f"UPDATE items SET {assignments} WHERE id = %s RETURNING {ITEM_COLUMNS}",
                        (*fields.values(), item_id),
                    )
                else:
                    cur.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = %s", (item_id,))
                row = cur.fetchone()
        except psycopg2.errors.UniqueViolation:
            return error("name already exists", 409)
        if row is None:
            return error("not found", 404)
        return item_json(row)


class Upsert(Resource):
    def post(self):
        fields = CREATE_PARSER.parse_args()
        with pg_cursor() as cur:
            cur.execute(
                "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, "
                f"price = EXCLUDED.price RETURNING {ITEM_COLUMNS}",
                (fields["name"], fields["description"], fields["price"]),
            )
            row = cur.fetchone()
        return item_json(row)


# --- mixed -----------------------------------------------------------------------------


class IoIntensive(Resource):
    def post(self):
        data = os.urandom(IO_FILE_BYTES)
        fd, path = tempfile.mkstemp(prefix="flask-restful-io-", suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            with open(path, "rb") as f:
                read_back = f.read()
        finally:
            os.unlink(path)
        if read_back != data:
            raise RuntimeError("temp file read back differs")
        file_bytes = len(read_back)

        request_id = uuid.uuid4().hex
        with pg_cursor(transaction=True) as cur:
            cur.execute(
                "INSERT INTO io_log (request_id, n, note) VALUES "
                + ", ".join(["(%s, %s, 'inserted')"] * 10)
                + " RETURNING id",
                [v for n in range(10) for v in (request_id, n)],
            )
            ids = [r[0] for r in cur.fetchall()]
            inserted = len(ids)
            cur.execute("UPDATE io_log SET note = 'updated' WHERE id = ANY(%s)", (ids[:5],))
            updated = cur.rowcount
            cur.execute("DELETE FROM io_log WHERE id = ANY(%s)", (ids,))
            deleted = cur.rowcount
        return {
            "file_bytes": file_bytes,
            "inserted": inserted,
            "updated": updated,
            "deleted": deleted,
        }


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
