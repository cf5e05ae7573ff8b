"""Plain Django function views; PostgreSQL through django.db.connection with raw SQL
(the tables already exist, there are no models or migrations). What is not Django's own
(SQL, SQLite bootstrap, parsing, bodies) comes from the shared kit, apps/shared/python/appkit."""

import time
from functools import wraps

from appkit.contract import MODES, SLEEP_S, STREAM_BYTES, UploadDigest, hello_json, item_fields_json
from appkit.contract import item_json, page, parse_counter_id, parse_int, sleep_json, sum_of_squares
from appkit.contract import temp_file_roundtrip, zero_chunks
from appkit.pg import fetch, fetchrow, io_log
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sqlite import increment_counter, process_sqlite, read_counter
from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

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


def item_body(request, partial=False):
    """The {name, description, price} fields of the JSON body: (fields, None) or (None, error)."""
    try:
        return item_fields_json(request.body, partial), None
    except ValueError as e:
        return None, str(e)


def fetch_item(item_id):
    with connection.cursor() as cur:
        return fetchrow(cur, ITEM_GET, item_id)


def counter_response(counter):
    if counter is None:
        return error("not found", 404)
    return JsonResponse(counter)


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
    return JsonResponse(hello_json())


@methods("GET")
def db_read(request):
    item_id = parse_int(request.GET.get("id"))
    if item_id is None:
        return error("id must be an integer", 400)
    row = fetch_item(item_id)
    if row is None:
        return error("not found", 404)
    return JsonResponse(item_json(row, zulu=True))


@methods("POST")
def db_write(request):
    fields, err = item_body(request)
    if err:
        return error(err, 400)
    try:
        with connection.cursor() as cur:
            new_id = fetchrow(cur, ITEM_INSERT_ID, fields["name"], fields["description"], fields["price"])[0]
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
    return JsonResponse(UploadDigest().read_from(stream).json())


@methods("GET")
def stream(request):
    resp = StreamingHttpResponse(zero_chunks(), content_type="application/octet-stream")
    resp["Content-Length"] = str(STREAM_BYTES)
    return resp


@methods("GET")
def cpu(request):
    n = parse_int(request.GET.get("n"))
    if n is None:
        return error("n must be an integer", 400)
    return JsonResponse({"n": n, "result": sum_of_squares(n)})


# --- blocking: a sync framework serves all three variants with plain sync views ---------


@methods("GET")
def sleep(request, mode):
    if mode not in MODES:
        return error("not found", 404)
    time.sleep(SLEEP_S)
    return JsonResponse(sleep_json(mode))


@methods("GET")
def sqlite_read(request, mode, item_id):
    counter_id = parse_counter_id(item_id)
    if mode not in MODES or counter_id is None:
        return error("not found", 404)
    return counter_response(read_counter(process_sqlite(), counter_id))


@methods("POST")
def sqlite_write(request, mode, item_id):
    counter_id = parse_counter_id(item_id)
    if mode not in MODES or counter_id is None:
        return error("not found", 404)
    return counter_response(increment_counter(process_sqlite(), counter_id))


# --- crud ------------------------------------------------------------------------------


@methods("GET")
def health(request):
    return JsonResponse({"status": "ok"})


@methods("GET", "POST")
def items(request):
    if request.method == "POST":
        return create_item(request)
    bounds = page(request.GET.get("limit"), request.GET.get("offset"))
    if bounds is None:
        return error("limit and offset must be non-negative integers", 400)
    with connection.cursor() as cur:
        rows = fetch(cur, ITEM_LIST, *bounds)
    return JsonResponse([item_json(r, zulu=True) for r in rows], safe=False)


def create_item(request):
    fields, err = item_body(request)
    if err:
        return error(err, 400)
    try:
        with connection.cursor() as cur:
            row = fetchrow(cur, ITEM_INSERT, fields["name"], fields["description"], fields["price"])
    except IntegrityError:
        return error("name already exists", 409)
    return JsonResponse(item_json(row, zulu=True), status=201)


@methods("GET", "PUT")
def item(request, item_id):
    item_id = parse_int(item_id)
    if item_id is None:
        return error("not found", 404)
    if request.method == "GET":
        row = fetch_item(item_id)
    else:
        fields, err = item_body(request, partial=True)
        if err:
            return error(err, 400)
        try:
            with connection.cursor() as cur:
                row = fetchrow(cur, ITEM_UPDATE, item_id, fields.get("name"), fields.get("description"), fields.get("price"))
        except IntegrityError:
            return error("name already exists", 409)
    if row is None:
        return error("not found", 404)
    return JsonResponse(item_json(row, zulu=True))


@methods("POST")
def upsert(request):
    fields, err = item_body(request)
    if err:
        return error(err, 400)
    with connection.cursor() as cur:
        row = fetchrow(cur, ITEM_UPSERT, fields["name"], fields["description"], fields["price"])
    return JsonResponse(item_json(row, zulu=True))


# --- mixed -----------------------------------------------------------------------------


@methods("POST")
def io_intensive(request):
    file_bytes = temp_file_roundtrip()  # plain blocking file calls in the sync worker
    with transaction.atomic(), connection.cursor() as cur:
        counts = io_log(cur)
    return JsonResponse({"file_bytes": file_bytes, **counts})
