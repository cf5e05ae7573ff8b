"""Plain Django function views; PostgreSQL through django.db.connection with raw SQL
(the tables already exist, there are no models or migrations)."""

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from datetime import datetime, timezone
from functools import wraps

from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from benchapp import sqlite_store

STREAM_CHUNK = bytes(65536)
STREAM_CHUNKS = 160  # 160 * 65536 = 10485760
IO_FILE_BYTES = 65536
U64_MASK = (1 << 64) - 1
INT_RE = re.compile(r"-?[0-9]+")
ITEM_COLUMNS = "id, name, description, price, created_at"
MODES = ("async", "threadpool", "blocking")


# --- helpers ---------------------------------------------------------------------------


def error(message, status):
    return JsonResponse({"error": message}, status=status)


def methods(*allowed):
    """Like require_http_methods, but the 405 is JSON."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                resp = error("method not allowed", 405)
                resp["Allow"] = ", ".join(allowed)
                return resp
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


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


def item_fields(request, require_all):
    """The {name, description, price} fields of the JSON body, or an error string."""
    try:
        body = json.loads(request.body)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None, "body must be JSON"
    if not isinstance(body, dict):
        return None, "body must be a JSON object"
    fields = {}
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"]:
            return None, "name must be a non-empty string"
        fields["name"] = body["name"]
    elif require_all:
        return None, "name is required"
    if "description" in body:
        if not isinstance(body["description"], str):
            return None, "description must be a string"
        fields["description"] = body["description"]
    elif require_all:
        fields["description"] = ""
    if "price" in body:
        if not is_number(body["price"]):
            return None, "price must be a number"
        fields["price"] = float(body["price"])
    elif require_all:
        return None, "price is required"
    return fields, None


def fetch_item(item_id):
    with connection.cursor() as cur:
        cur.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = %s", (item_id,))
        return cur.fetchone()


def not_found(request, exception=None):
    return error("not found", 404)


def server_error(request):
    return error("internal server error", 500)


# --- core ------------------------------------------------------------------------------


@methods("GET")
def ping(request):
    return HttpResponse("pong", content_type="text/plain; charset=utf-8")


@methods("GET")
def json_view(request):
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return JsonResponse({"message": "hello", "ts": ts})


@methods("GET")
def db_read(request):
    item_id = parse_int(request.GET.get("id"))
    if item_id is None:
        return error("id must be an integer", 400)
    row = fetch_item(item_id)
    if row is None:
        return error("not found", 404)
    return JsonResponse(item_json(row))


@methods("POST")
def db_write(request):
    fields, err = item_fields(request, require_all=True)
    if err:
        return error(err, 400)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) RETURNING id",
                (fields["name"], fields["description"], fields["price"]),
            )
            new_id = cur.fetchone()[0]
    except IntegrityError:
        return error("name already exists", 409)
    return JsonResponse({"id": new_id}, status=201)


@methods("POST")
def upload(request):
    # Django bounds the request stream by Content-Length (0 when absent). gunicorn marks a
    # chunked request body with wsgi.input_terminated: then read the raw input to its end.
    stream = request
    if not request.META.get("CONTENT_LENGTH") and request.META.get("wsgi.input_terminated"):
        stream = request.META["wsgi.input"]
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"sha256": digest.hexdigest(), "size": size})


def zero_chunks():
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


@methods("GET")
def stream(request):
    resp = StreamingHttpResponse(zero_chunks(), content_type="application/octet-stream")
    resp["Content-Length"] = str(STREAM_CHUNKS * len(STREAM_CHUNK))
    return resp


@methods("GET")
def cpu(request):
    n = parse_int(request.GET.get("n"))
    if n is None:
        return error("n must be an integer", 400)
    total = 0
    for i in range(n):
        total += i * i
    return JsonResponse({"n": n, "result": total & U64_MASK})


# --- blocking: a sync framework serves all three variants with plain sync views ---------


@methods("GET")
def sleep(request, mode):
    if mode not in MODES:
        return error("not found", 404)
    time.sleep(0.05)
    return JsonResponse({"slept_ms": 50, "mode": mode})


@methods("GET")
def sqlite_read(request, mode, item_id):
    item_id = parse_int(item_id)
    if mode not in MODES or item_id is None:
        return error("not found", 404)
    value = sqlite_store.read(item_id)
    if value is None:
        return error("not found", 404)
    return JsonResponse({"id": item_id, "value": value})


@methods("POST")
def sqlite_write(request, mode, item_id):
    item_id = parse_int(item_id)
    if mode not in MODES or item_id is None:
        return error("not found", 404)
    value = sqlite_store.increment(item_id)
    if value is None:
        return error("not found", 404)
    return JsonResponse({"id": item_id, "value": value})


# --- crud ------------------------------------------------------------------------------


@methods("GET")
def health(request):
    return JsonResponse({"status": "ok"})


@methods("GET", "POST")
def items(request):
    if request.method == "POST":
        return create_item(request)
    limit_arg = request.GET.get("limit")
    offset_arg = request.GET.get("offset")
    limit = 10 if limit_arg is None else parse_int(limit_arg)
    offset = 0 if offset_arg is None else parse_int(offset_arg)
    if limit is None or offset is None or limit < 0 or offset < 0:
        return error("limit and offset must be non-negative integers", 400)
    limit = min(limit, 100)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT %s OFFSET %s", (limit, offset)
        )
        rows = cur.fetchall()
    return JsonResponse([item_json(r) for r in rows], safe=False)


def create_item(request):
    fields, err = item_fields(request, require_all=True)
    if err:
        return error(err, 400)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
                f"RETURNING {ITEM_COLUMNS}",
                (fields["name"], fields["description"], fields["price"]),
            )
            row = cur.fetchone()
    except IntegrityError:
        return error("name already exists", 409)
    return JsonResponse(item_json(row), status=201)


@methods("GET", "PUT")
def item(request, item_id):
    item_id = parse_int(item_id)
    if item_id is None:
        return error("not found", 404)
    if request.method == "GET":
        row = fetch_item(item_id)
    else:
        fields, err = item_fields(request, require_all=False)
        if err:
            return error(err, 400)
        if not fields:
            row = fetch_item(item_id)
        else:
            assignments = ", ".join(f"{column} = %s" for column in fields)
            try:
                with connection.cursor() as cur:
                    cur.execute(
                        f"UPDATE items SET {assignments} WHERE id = %s RETURNING {ITEM_COLUMNS}",
                        (*fields.values(), item_id),
                    )
                    row = cur.fetchone()
            except IntegrityError:
                return error("name already exists", 409)
    if row is None:
        return error("not found", 404)
    return JsonResponse(item_json(row))


@methods("POST")
def upsert(request):
    fields, err = item_fields(request, require_all=True)
    if err:
        return error(err, 400)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, "
            f"price = EXCLUDED.price RETURNING {ITEM_COLUMNS}",
            (fields["name"], fields["description"], fields["price"]),
        )
        row = cur.fetchone()
    return JsonResponse(item_json(row))


# --- mixed -----------------------------------------------------------------------------


@methods("POST")
def io_intensive(request):
    data = os.urandom(IO_FILE_BYTES)
    fd, path = tempfile.mkstemp(prefix="django-io-", suffix=".bin")
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
    with transaction.atomic(), connection.cursor() as cur:
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
    return JsonResponse(
        {"file_bytes": file_bytes, "inserted": inserted, "updated": updated, "deleted": deleted}
    )
