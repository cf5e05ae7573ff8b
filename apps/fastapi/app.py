"""FastAPI app serving the runner scenario contract (apps/README.md), served by uvicorn.

Each uvicorn worker process runs the lifespan below: it creates its own asyncpg pool
(DB_POOL_SIZE connections), its own aiosqlite connection and its own blocking sqlite3
connection, and initialises the SQLite counters table. What is not FastAPI's own (SQL,
SQLite bootstrap, parsing, bodies) comes from the shared kit, apps/shared/python/appkit.
"""

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Optional

import asyncpg
from appkit.contract import INT4_MAX, INT4_MIN, SLEEP_S, UploadDigest, hello_json, item_json, page
from appkit.contract import parse_counter_id, parse_int, parse_item_id, sleep_json, sum_of_squares
from appkit.contract import temp_file_roundtrip, zero_chunks_async
from appkit.pg import asyncpg_pool, io_log_async
from appkit.sql import ITEM_GET, ITEM_INSERT, ITEM_INSERT_ID, ITEM_LIST, ITEM_UPDATE, ITEM_UPSERT
from appkit.sql import SQLITE_READ, SQLITE_WRITE
from appkit.sqlite import counter_json, init_sqlite, open_aiosqlite, open_sqlite
from appkit.sqlite import thread_increment_counter, thread_read_counter
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

state = {}


def error(status, message):
    return JSONResponse({"error": message}, status_code=status)


def counter_response(counter):
    return error(404, "not found") if counter is None else counter


def pg_pool():
    return state.get("pg")


@asynccontextmanager
async def lifespan(app):
    init_sqlite()
    state["pg"] = await asyncpg_pool()
    state["aiosqlite"] = await open_aiosqlite()
    state["blocking_sqlite"] = open_sqlite()  # used only on the event-loop thread
    try:
        yield
    finally:
        await state["aiosqlite"].close()
        state["blocking_sqlite"].close()
        if state.get("pg") is not None:
            await state["pg"].close()


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(RequestValidationError)
async def validation_error(request, exc):
    return error(400, "invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))


@app.exception_handler(asyncpg.UniqueViolationError)
async def unique_violation(request, exc):
    return error(409, "name already exists")


class ItemIn(BaseModel):
    name: str
    description: str = ""
    price: float


class ItemPatch(BaseModel):
    name: Optional[str] = None
    description: Optional[str] = None
    price: Optional[float] = None


# ---------------------------------------------------------------- core


@app.get("/ping")
async def ping():
    return PlainTextResponse("pong")


@app.get("/json")
async def json_endpoint():
    return hello_json()


@app.get("/db-read")
async def db_read(id: Optional[str] = None):
    item_id = parse_int(id)
    if item_id is None:
        return error(400, "id must be an integer")
    if not INT4_MIN <= item_id <= INT4_MAX:
        return error(404, "not found")
    row = await pg_pool().fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return item_json(row)


@app.post("/db-write", status_code=201)
async def db_write(body: ItemIn):
    new_id = await pg_pool().fetchval(ITEM_INSERT_ID, body.name, body.description, body.price)
    return {"id": new_id}


@app.post("/upload")
async def upload(request: Request):
    digest = UploadDigest()
    async for chunk in request.stream():
        digest.update(chunk)
    return digest.json()


@app.get("/stream")
async def stream():
    return StreamingResponse(zero_chunks_async(), media_type="application/octet-stream")


@app.websocket("/ws-echo")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


@app.get("/cpu")
async def cpu(n: Optional[str] = None):
    count = parse_int(n)
    if count is None or count < 0:
        return error(400, "n must be a non-negative integer")
    return {"n": count, "result": sum_of_squares(count)}


# ---------------------------------------------------------------- blocking set


@app.get("/sleep/async")
async def sleep_async():
    await asyncio.sleep(SLEEP_S)  # non-blocking
    return sleep_json("async")


@app.get("/sleep/threadpool")
def sleep_threadpool():  # sync handler: FastAPI runs it in its threadpool
    time.sleep(SLEEP_S)  # blocks a threadpool thread, not the loop
    return sleep_json("threadpool")


@app.get("/sleep/blocking")
async def sleep_blocking():
    time.sleep(SLEEP_S)  # BLOCKING: stalls the event loop (the anti-pattern)
    return sleep_json("blocking")


@app.get("/sqlite/async/read/{id}")
async def sqlite_async_read(id: str):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await state["aiosqlite"].execute_fetchall(SQLITE_READ, (counter_id,))  # aiosqlite: non-blocking
    return counter_response(counter_json(rows))


@app.post("/sqlite/async/write/{id}")
async def sqlite_async_write(id: str):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = await state["aiosqlite"].execute_fetchall(SQLITE_WRITE, (counter_id,))  # aiosqlite: non-blocking, commits
    return counter_response(counter_json(rows))


@app.get("/sqlite/threadpool/read/{id}")
def sqlite_threadpool_read(id: str):  # sync handler: runs in FastAPI's threadpool
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    return counter_response(thread_read_counter(counter_id))  # sqlite3 in a threadpool thread


@app.post("/sqlite/threadpool/write/{id}")
def sqlite_threadpool_write(id: str):  # sync handler: runs in FastAPI's threadpool
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    return counter_response(thread_increment_counter(counter_id))  # sqlite3 in a threadpool thread, commits


@app.get("/sqlite/blocking/read/{id}")
async def sqlite_blocking_read(id: str):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = state["blocking_sqlite"].execute(SQLITE_READ, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop
    return counter_response(counter_json(rows))


@app.post("/sqlite/blocking/write/{id}")
async def sqlite_blocking_write(id: str):
    counter_id = parse_counter_id(id)
    if counter_id is None:
        return error(404, "not found")
    rows = state["blocking_sqlite"].execute(SQLITE_WRITE, (counter_id,)).fetchall()  # BLOCKING sqlite3 on the loop, commits
    return counter_response(counter_json(rows))


# ---------------------------------------------------------------- crud


@app.get("/")
async def health():
    return {"status": "ok"}


@app.get("/items")
async def list_items(limit: Optional[str] = None, offset: Optional[str] = None):
    bounds = page(limit, offset)
    if bounds is None:
        return error(400, "limit and offset must be non-negative integers")
    rows = await pg_pool().fetch(ITEM_LIST, *bounds)
    return [item_json(r) for r in rows]


@app.get("/items/{id}")
async def get_item(id: str):
    item_id = parse_item_id(id)
    if item_id is None:
        return error(404, "not found")
    row = await pg_pool().fetchrow(ITEM_GET, item_id)
    if row is None:
        return error(404, "not found")
    return item_json(row)


@app.post("/items", status_code=201)
async def create_item(body: ItemIn):
    row = await pg_pool().fetchrow(ITEM_INSERT, body.name, body.description, body.price)
    return item_json(row)


@app.put("/items/{id}")
async def update_item(id: str, body: ItemPatch):
    item_id = parse_item_id(id)
    if item_id is None:
        return error(404, "not found")
    row = await pg_pool().fetchrow(ITEM_UPDATE, item_id, body.name, body.description, body.price)
    if row is None:
        return error(404, "not found")
    return item_json(row)


@app.post("/upsert")
async def upsert(body: ItemIn):
    row = await pg_pool().fetchrow(ITEM_UPSERT, body.name, body.description, body.price)
    return item_json(row)


# ---------------------------------------------------------------- mixed


@app.post("/io-intensive")
async def io_intensive():
    file_bytes = await run_in_threadpool(temp_file_roundtrip)  # file I/O in a worker thread
    counts = await io_log_async(pg_pool())  # one asyncpg transaction
    return {"file_bytes": file_bytes, **counts}
