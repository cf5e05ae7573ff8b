"""Django REST framework APIViews; request bodies validated and items rendered by
serializers; PostgreSQL through django.db.connection with raw SQL (the tables already
exist, there are no models or migrations)."""

import hashlib
import os
import re
import tempfile
import time
import uuid
from datetime import datetime, timezone

from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from benchapp import sqlite_store

STREAM_CHUNK = bytes(65536)
STREAM_CHUNKS = 160  # 160 * 65536 = 10485760
IO_FILE_BYTES = 65536
U64_MASK = (1 << 64) - 1
INT_RE = re.compile(r"-?[0-9]+")
ITEM_FIELDS = ("id", "name", "description", "price", "created_at")
ITEM_COLUMNS = ", ".join(ITEM_FIELDS)
MODES = ("async", "threadpool", "blocking")


# --- serializers and helpers -----------------------------------------------------------


class ItemInputSerializer(serializers.Serializer):
    name = serializers.CharField(trim_whitespace=False)
    description = serializers.CharField(
        required=False, default="", allow_blank=True, trim_whitespace=False
    )
    price = serializers.FloatField()


class ItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    price = serializers.FloatField()
    created_at = serializers.DateTimeField()  # ISO-8601, UTC as "Z"


def item_data(row):
    return ItemSerializer(dict(zip(ITEM_FIELDS, row))).data


def valid_item_input(request, partial=False):
    serializer = ItemInputSerializer(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)  # 400 {"error": ...} via benchapp.drf
    return serializer.validated_data


def error(message, code):
    return Response({"error": message}, status=code)


def parse_int(text):
    if text is None or not INT_RE.fullmatch(text):
        return None
    return int(text)


def fetch_item(item_id):
    with connection.cursor() as cur:
        cur.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = %s", (item_id,))
        return cur.fetchone()


def not_found(request, exception=None):
    """Django's handler404, for paths no view matches."""
    return JsonResponse({"error": "not found"}, status=404)


def server_error(request):
    return JsonResponse({"error": "internal server error"}, status=500)


# --- core ------------------------------------------------------------------------------


class Ping(APIView):
    def get(self, request):
        return HttpResponse("pong", content_type="text/plain; charset=utf-8")


class Json(APIView):
    def get(self, request):
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return Response({"message": "hello", "ts": ts})


class DbRead(APIView):
    def get(self, request):
        item_id = parse_int(request.query_params.get("id"))
        if item_id is None:
            return error("id must be an integer", status.HTTP_400_BAD_REQUEST)
        row = fetch_item(item_id)
        if row is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return Response(item_data(row))


class DbWrite(APIView):
    def post(self, request):
        fields = valid_item_input(request)
        try:
            with connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
                    "RETURNING id",
                    (fields["name"], fields["description"], fields["price"]),
                )
                new_id = cur.fetchone()[0]
        except IntegrityError:
            return error("name already exists", status.HTTP_409_CONFLICT)
        return Response({"id": new_id}, status=status.HTTP_201_CREATED)


class Upload(APIView):
    def post(self, request):
        # request.stream is bounded by Content-Length (None when there is none). gunicorn
        # marks a chunked request body with wsgi.input_terminated: then read the raw input.
        meta = request.META
        if not meta.get("CONTENT_LENGTH") and meta.get("wsgi.input_terminated"):
            stream = meta["wsgi.input"]
        else:
            stream = request.stream
        digest = hashlib.sha256()
        size = 0
        while stream is not None:
            chunk = stream.read(65536)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
        return Response({"sha256": digest.hexdigest(), "size": size})


def zero_chunks():
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


class Stream(APIView):
    def get(self, request):
        resp = StreamingHttpResponse(zero_chunks(), content_type="application/octet-stream")
        resp["Content-Length"] = str(STREAM_CHUNKS * len(STREAM_CHUNK))
        return resp


class Cpu(APIView):
    def get(self, request):
        n = parse_int(request.query_params.get("n"))
        if n is None:
            return error("n must be an integer", status.HTTP_400_BAD_REQUEST)
        total = 0
        for i in range(n):
            total += i * i
        return Response({"n": n, "result": total & U64_MASK})


# --- blocking: a sync framework serves all three variants with plain sync views ---------


class Sleep(APIView):
    def get(self, request, mode):
        if mode not in MODES:
            return error("not found", status.HTTP_404_NOT_FOUND)
        time.sleep(0.05)
        return Response({"slept_ms": 50, "mode": mode})


class SqliteRead(APIView):
    def get(self, request, mode, item_id):
        item_id = parse_int(item_id)
        if mode not in MODES or item_id is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        value = sqlite_store.read(item_id)
        if value is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return Response({"id": item_id, "value": value})


class SqliteWrite(APIView):
    def post(self, request, mode, item_id):
        item_id = parse_int(item_id)
        if mode not in MODES or item_id is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        value = sqlite_store.increment(item_id)
        if value is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return Response({"id": item_id, "value": value})


# --- crud ------------------------------------------------------------------------------


class Health(APIView):
    def get(self, request):
        return Response({"status": "ok"})


class ItemList(APIView):
    def get(self, request):
        limit_arg = request.query_params.get("limit")
        offset_arg = request.query_params.get("offset")
        limit = 10 if limit_arg is None else parse_int(limit_arg)
        offset = 0 if offset_arg is None else parse_int(offset_arg)
        if limit is None or offset is None or limit < 0 or offset < 0:
            return error(
                "limit and offset must be non-negative integers", status.HTTP_400_BAD_REQUEST
            )
        limit = min(limit, 100)
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT %s OFFSET %s",
                (limit, offset),
            )
            rows = cur.fetchall()
        return Response(ItemSerializer([dict(zip(ITEM_FIELDS, r)) for r in rows], many=True).data)

    def post(self, request):
        fields = valid_item_input(request)
        try:
            with connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
                    f"RETURNING {ITEM_COLUMNS}",
                    (fields["name"], fields["description"], fields["price"]),
                )
                row = cur.fetchone()
        except IntegrityError:
            return error("name already exists", status.HTTP_409_CONFLICT)
        return Response(item_data(row), status=status.HTTP_201_CREATED)


class ItemDetail(APIView):
    def get(self, request, item_id):
        item_id = parse_int(item_id)
        row = None if item_id is None else fetch_item(item_id)
        if row is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return Response(item_data(row))

    def put(self, request, item_id):
        item_id = parse_int(item_id)
        if item_id is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        fields = dict(valid_item_input(request, partial=True))
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
                return error("name already exists", status.HTTP_409_CONFLICT)
        if row is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return Response(item_data(row))


class Upsert(APIView):
    def post(self, request):
        fields = valid_item_input(request)
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO items (name, description, price) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, "
                f"price = EXCLUDED.price RETURNING {ITEM_COLUMNS}",
                (fields["name"], fields["description"], fields["price"]),
            )
            row = cur.fetchone()
        return Response(item_data(row))


# --- mixed -----------------------------------------------------------------------------


class IoIntensive(APIView):
    def post(self, request):
        data = os.urandom(IO_FILE_BYTES)
        fd, path = tempfile.mkstemp(prefix="django-drf-io-", suffix=".bin")
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
        return Response(
            {"file_bytes": file_bytes, "inserted": inserted, "updated": updated, "deleted": deleted}
        )
