"""Django REST framework APIViews; request bodies validated and items rendered by
serializers; PostgreSQL through django.db.connection with raw SQL (the tables already
exist, there are no models or migrations). What is not Django's or REST framework's own (SQL,
SQLite bootstrap, parsing, bodies) comes from the shared kit, apps/shared/python/appkit."""

import time

from appkit.contract import MODES, SLEEP_S, STREAM_BYTES, UploadDigest, hello_json, page
from appkit.contract import parse_counter_id, parse_int, sleep_json, sum_of_squares
from appkit.contract import temp_file_roundtrip, zero_chunks
from appkit.pg import fetch, fetchrow, io_log
from appkit.sql import ITEM_FIELDS, ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE
from appkit.sql import ITEM_UPSERT
from appkit.sqlite import increment_counter, process_sqlite, read_counter
from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView


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


def fetch_item(item_id):
    with connection.cursor() as cur:
        return fetchrow(cur, ITEM_GET, item_id)


def not_found(request, exception=None):
    """Django's handler404, for paths no view matches."""
    return JsonResponse({"error": "not found"}, status=404)


def server_error(request):
    return JsonResponse({"error": "internal server error"}, status=500)


def counter_response(counter):
    if counter is None:
        return error("not found", status.HTTP_404_NOT_FOUND)
    return Response(counter)


# --- core ------------------------------------------------------------------------------


class Ping(APIView):
    def get(self, request):
        return HttpResponse("pong", content_type="text/plain; charset=utf-8")


class Json(APIView):
    def get(self, request):
        return Response(hello_json())


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
                new_id = fetchrow(cur, ITEM_INSERT_ID, fields["name"], fields["description"], fields["price"])[0]
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
        return Response(UploadDigest().read_from(stream).json())


class Stream(APIView):
    def get(self, request):
        resp = StreamingHttpResponse(zero_chunks(), content_type="application/octet-stream")
        resp["Content-Length"] = str(STREAM_BYTES)
        return resp


class Cpu(APIView):
    def get(self, request):
        n = parse_int(request.query_params.get("n"))
        if n is None:
            return error("n must be an integer", status.HTTP_400_BAD_REQUEST)
        return Response({"n": n, "result": sum_of_squares(n)})


# --- blocking: a sync framework serves all three variants with plain sync views ---------


class Sleep(APIView):
    def get(self, request, mode):
        if mode not in MODES:
            return error("not found", status.HTTP_404_NOT_FOUND)
        time.sleep(SLEEP_S)
        return Response(sleep_json(mode))


class SqliteRead(APIView):
    def get(self, request, mode, item_id):
        counter_id = parse_counter_id(item_id)
        if mode not in MODES or counter_id is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return counter_response(read_counter(process_sqlite(), counter_id))


class SqliteWrite(APIView):
    def post(self, request, mode, item_id):
        counter_id = parse_counter_id(item_id)
        if mode not in MODES or counter_id is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return counter_response(increment_counter(process_sqlite(), counter_id))


# --- crud ------------------------------------------------------------------------------


class Health(APIView):
    def get(self, request):
        return Response({"status": "ok"})


class ItemList(APIView):
    def get(self, request):
        bounds = page(request.query_params.get("limit"), request.query_params.get("offset"))
        if bounds is None:
            return error(
                "limit and offset must be non-negative integers", status.HTTP_400_BAD_REQUEST
            )
        with connection.cursor() as cur:
            rows = fetch(cur, ITEM_LIST, *bounds)
        return Response(ItemSerializer([dict(zip(ITEM_FIELDS, r)) for r in rows], many=True).data)

    def post(self, request):
        fields = valid_item_input(request)
        try:
            with connection.cursor() as cur:
                row = fetchrow(cur, ITEM_INSERT, fields["name"], fields["description"], fields["price"])
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
        fields = valid_item_input(request, partial=True)
        try:
            with connection.cursor() as cur:
                row = fetchrow(cur, ITEM_UPDATE, item_id, fields.get("name"), fields.get("description"), fields.get("price"))
        except IntegrityError:
            return error("name already exists", status.HTTP_409_CONFLICT)
        if row is None:
            return error("not found", status.HTTP_404_NOT_FOUND)
        return Response(item_data(row))


class Upsert(APIView):
    def post(self, request):
        fields = valid_item_input(request)
        with connection.cursor() as cur:
            row = fetchrow(cur, ITEM_UPSERT, fields["name"], fields["description"], fields["price"])
        return Response(item_data(row))


# --- mixed -----------------------------------------------------------------------------


class IoIntensive(APIView):
    def post(self, request):
        file_bytes = temp_file_roundtrip()  # plain blocking file calls in the sync worker
        with transaction.atomic(), connection.cursor() as cur:
            counts = io_log(cur)
        return Response({"file_bytes": file_bytes, **counts})
