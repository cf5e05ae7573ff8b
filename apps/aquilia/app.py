"""Aquilia app serving the runner scenario contract (apps/README.md), served by uvicorn.

A standalone Aquilia app: one AppManifest (module "bench", mounted at "/") listing the HTTP
controller and the WebSocket controller below, wrapped by AquiliaServer, whose `.app` is the
ASGI application. Each uvicorn worker process runs the manifest's lifecycle startup hook on
ASGI lifespan startup: it creates its own asyncpg pool (DB_POOL_SIZE connections), its own
aiosqlite connection and its own blocking sqlite3 connection, and initialises the SQLite
counters table. What is not Aquilia's own (SQL, SQLite bootstrap, parsing, bodies) comes
from the shared kit, apps/shared/python/appkit.
"""

import asyncio
import json
import time

import asyncpg
from appkit.contract import INT4_MAX, INT4_MIN, SLEEP_S, UploadDigest, hello_json, item_fields
from appkit.contract import item_json, page, parse_counter_id, parse_int, parse_item_id, sleep_json
from appkit.contract import sum_of_squares, temp_file_roundtrip, zero_chunks_async
from appkit.pg import asyncpg_pool, io_log_async
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sql import SQLITE_READ, SQLITE_WRITE
from appkit.sqlite import counter_json, init_sqlite, open_aiosqlite, open_sqlite
from appkit.sqlite import thread_increment_counter, thread_read_counter
from aquilia import GET, POST, PUT, AquiliaServer, Controller, RequestCtx, Response
from aquilia.manifest import AppManifest, LifecycleConfig
from aquilia.sockets import Connection, Event, Socket, SocketController
from aquilia.sockets.envelope import MessageEnvelope, MessageType

MAX_UPLOAD_BYTES = 1 << 30  # Aquilia's Request defaults to a 10 MiB body limit

# Per worker process, filled in by the lifecycle startup hook.
state = {}


class BadRequest(Exception):
    pass


# ---------------------------------------------------------------- helpers


def json_response(obj, status=200):
    return Response(json.dumps(obj).encode(), status=status, media_type="application/json")


def error(status, message):
    return json_response({"error": message}, status)


NOT_FOUND = {"error": "not found"}


async def item_body(request, partial=False):
    """The {name, description, price} JSON body, validated; raises BadRequest."""
    try:
        body = await request.json()
    except Exception:
        raise BadRequest("body must be JSON")
    try:
        return item_fields(body, partial)
    except ValueError as e:
        raise BadRequest(str(e))


class RawTextCodec:
    """WebSocket codec for /ws-echo: a raw frame becomes an "echo" event with the frame's text.

    AquilaSockets decodes every incoming frame with its codec (JSON envelopes by default);
    the echo contract has plain text frames, so the socket runtime gets this codec instead.
    """

    def decode(self, data: bytes) -> MessageEnvelope:
        return MessageEnvelope(type=MessageType.EVENT, event="echo", payload={"text": data.decode("utf-8")})

    def encode(self, envelope: MessageEnvelope) -> bytes:
        return json.dumps(envelope.to_dict()).encode("utf-8")


async def startup(config, container):
    """Lifecycle startup hook (per worker process, on ASGI lifespan startup)."""
    init_sqlite()
    state["pg"] = await asyncpg_pool()
    state["aiosqlite"] = await open_aiosqlite()
    state["blocking_sqlite"] = open_sqlite()  # used only on the event-loop thread


async def shutdown(config, container):
    await state["aiosqlite"].close()
    state["blocking_sqlite"].close()
    if state["pg"] is not None:
        await state["pg"].close()


async def unique_or_bad_request(coro):
    """Runs a DB write, mapping a duplicate name to 409 and a bad body to 400."""
    try:
        return await coro
    except BadRequest as e:
        return error(400, str(e))
    except asyncpg.UniqueViolationError:
        return error(409, "name already exists")


def counter_response(counter):
    if counter is None:
        return json_response(NOT_FOUND, 404)
    return json_response(counter)


# ---------------------------------------------------------------- HTTP controller


class BenchController(Controller):
    prefix = ""
    instantiation_mode = "singleton"

    # ------------------------------------------------------------ core

    @GET("/ping")
    async def ping(self, ctx: RequestCtx):
        return Response.text("pong")

    @GET("/json")
    async def json_endpoint(self, ctx: RequestCtx):
        return json_response(hello_json())

    @GET("/db-read")
    async def db_read(self, ctx: RequestCtx):
        item_id = parse_int(ctx.request.query_param("id"))
        if item_id is None:
            return error(400, "id must be an integer")
        if not INT4_MIN <= item_id <= INT4_MAX:
            return json_response(NOT_FOUND, 404)
        row = await state["pg"].fetchrow(ITEM_GET, item_id)
        if row is None:
            return json_response(NOT_FOUND, 404)
        return json_response(item_json(row))

    @POST("/db-write")
    async def db_write(self, ctx: RequestCtx):
        async def write():
            body = await item_body(ctx.request)
            new_id = await state["pg"].fetchval(ITEM_INSERT_ID, body["name"], body["description"], body["price"])
            return json_response({"id": new_id}, 201)

        return await unique_or_bad_request(write())

    @POST("/upload")
    async def upload(self, ctx: RequestCtx):
        request = ctx.request
        request.max_body_size = MAX_UPLOAD_BYTES
        digest = UploadDigest()
        async for chunk in request.iter_bytes():
            digest.update(chunk)
        return json_response(digest.json())

    @GET("/stream")
    async def stream(self, ctx: RequestCtx):
        return Response.stream(zero_chunks_async(), media_type="application/octet-stream")

    @GET("/cpu")
    async def cpu(self, ctx: RequestCtx):
        count = parse_int(ctx.request.query_param("n"))
        if count is None or count < 0:
            return error(400, "n must be a non-negative integer")
        return json_response({"n": count, "result": sum_of_squares(count)})

    # ------------------------------------------------------------ blocking set

    @GET("/sleep/async")
    async def sleep_async(self, ctx: RequestCtx):
        await asyncio.sleep(SLEEP_S)  # non-blocking
        return json_response(sleep_json("async"))

    @GET("/sleep/threadpool")
    async def sleep_threadpool(self, ctx: RequestCtx):
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, SLEEP_S)  # threadpool
        return json_response(sleep_json("threadpool"))

    @GET("/sleep/blocking")
    async def sleep_blocking(self, ctx: RequestCtx):
        time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
        return json_response(sleep_json("blocking"))

    @GET("/sqlite/async/read/{id}")
    async def sqlite_async_read(self, ctx: RequestCtx, id: str):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
        return counter_response(counter_json(rows))

    @POST("/sqlite/async/write/{id}")
    async def sqlite_async_write(self, ctx: RequestCtx, id: str):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = await state["aiosqlite"].execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
        return counter_response(counter_json(rows))

    @GET("/sqlite/threadpool/read/{id}")
    async def sqlite_threadpool_read(self, ctx: RequestCtx, id: str):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        counter = await asyncio.get_running_loop().run_in_executor(None, thread_read_counter, counter_id)
        return counter_response(counter)

    @POST("/sqlite/threadpool/write/{id}")
    async def sqlite_threadpool_write(self, ctx: RequestCtx, id: str):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        counter = await asyncio.get_running_loop().run_in_executor(None, thread_increment_counter, counter_id)
        return counter_response(counter)

    @GET("/sqlite/blocking/read/{id}")
    async def sqlite_blocking_read(self, ctx: RequestCtx, id: str):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = state["blocking_sqlite"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
        return counter_response(counter_json(rows))

    @POST("/sqlite/blocking/write/{id}")
    async def sqlite_blocking_write(self, ctx: RequestCtx, id: str):
        counter_id = parse_counter_id(id)
        if counter_id is None:
            return json_response(NOT_FOUND, 404)
        rows = state["blocking_sqlite"].execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
        return counter_response(counter_json(rows))

    # ------------------------------------------------------------ crud

    @GET("/")
    async def health(self, ctx: RequestCtx):
        return json_response({"status": "ok"})

    @GET("/items")
    async def list_items(self, ctx: RequestCtx):
        bounds = page(ctx.request.query_param("limit"), ctx.request.query_param("offset"))
        if bounds is None:
            return error(400, "limit and offset must be non-negative integers")
        rows = await state["pg"].fetch(ITEM_LIST, *bounds)
        return json_response([item_json(r) for r in rows])

    @GET("/items/{id}")
    async def get_item(self, ctx: RequestCtx, id: str):
        item_id = parse_item_id(id)
        if item_id is None:
            return json_response(NOT_FOUND, 404)
        row = await state["pg"].fetchrow(ITEM_GET, item_id)
        if row is None:
            return json_response(NOT_FOUND, 404)
        return json_response(item_json(row))

    @POST("/items")
    async def create_item(self, ctx: RequestCtx):
        async def create():
            body = await item_body(ctx.request)
            row = await state["pg"].fetchrow(ITEM_INSERT, body["name"], body["description"], body["price"])
            return json_response(item_json(row), 201)

        return await unique_or_bad_request(create())

    @PUT("/items/{id}")
    async def update_item(self, ctx: RequestCtx, id: str):
        async def update():
            body = await item_body(ctx.request, partial=True)
            item_id = parse_item_id(id)
            if item_id is None:
                return json_response(NOT_FOUND, 404)
            row = await state["pg"].fetchrow(
                ITEM_UPDATE, item_id, body.get("name"), body.get("description"), body.get("price")
            )
            if row is None:
                return json_response(NOT_FOUND, 404)
            return json_response(item_json(row))

        return await unique_or_bad_request(update())

    @POST("/upsert")
    async def upsert(self, ctx: RequestCtx):
        async def upsert():
            body = await item_body(ctx.request)
            row = await state["pg"].fetchrow(ITEM_UPSERT, body["name"], body["description"], body["price"])
            return json_response(item_json(row))

        return await unique_or_bad_request(upsert())

    # ------------------------------------------------------------ mixed

    @POST("/io-intensive")
    async def io_intensive(self, ctx: RequestCtx):
        file_bytes = await asyncio.get_running_loop().run_in_executor(None, temp_file_roundtrip)  # file I/O in a thread
        counts = await io_log_async(state["pg"])  # one asyncpg transaction
        return json_response({"file_bytes": file_bytes, **counts})


# ---------------------------------------------------------------- WebSocket controller


@Socket("/ws-echo", max_message_size=1 << 20)
class EchoSocket(SocketController):
    @Event("echo")
    async def echo(self, conn: Connection, payload):
        await conn.send_raw(payload["text"].encode("utf-8"))  # sent back as a text frame


# ---------------------------------------------------------------- app

manifest = AppManifest(
    name="bench",
    version="1.0.0",
    description="runner benchmark contract",
    controllers=["app:BenchController"],
    socket_controllers=["app:EchoSocket"],
    lifecycle=LifecycleConfig(on_startup="app:startup", on_shutdown="app:shutdown"),
    auto_discover=False,
)
server = AquiliaServer(manifests=[manifest], workspace_modules={"bench": {"route_prefix": "/"}})
server.aquila_sockets.codec = RawTextCodec()  # /ws-echo speaks raw text frames, not JSON envelopes
app = server.app
