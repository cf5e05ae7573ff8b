"""The scenario contract (apps/README.md) as values and small functions, framework-neutral."""

import asyncio
import hashlib
import json
import os
import re
import tempfile
from datetime import datetime, timezone

# ---------------------------------------------------------------- the environment runner sets

DATABASE_URL = os.environ.get("DATABASE_URL")
DB_POOL_SIZE = max(1, int(os.environ.get("DB_POOL_SIZE") or 10))
SQLITE_PATH = os.environ.get("SQLITE_PATH") or os.path.join(tempfile.gettempdir(), "bench-sqlite.db")

# ---------------------------------------------------------------- constants

SLEEP_S = 0.05  # GET /sleep/{async,threadpool,blocking}
SLEEP_MS = 50
MODES = ("async", "threadpool", "blocking")  # the variants of /sleep/* and /sqlite/*
STREAM_CHUNK = bytes(65536)  # GET /stream: 160 chunks of 65536 zero bytes
STREAM_CHUNKS = 160
STREAM_BYTES = STREAM_CHUNKS * len(STREAM_CHUNK)  # 10485760
IO_FILE_BYTES = 65536  # POST /io-intensive's temp file
MASK64 = (1 << 64) - 1
INT4_MIN, INT4_MAX = -(1 << 31), (1 << 31) - 1  # items.id is a PostgreSQL integer
INT8_MIN, INT8_MAX = -(1 << 63), (1 << 63) - 1  # counters.id is a SQLite integer

_INT_RE = re.compile(r"[+-]?\d+")

# ---------------------------------------------------------------- parsing


def parse_int(value):
    """Strict integer parse: None unless `value` is an optional sign and digits."""
    if value is None or not _INT_RE.fullmatch(value):
        return None
    return int(value)


def parse_item_id(value):
    """An items id from a path or query string, or None when it cannot name a row."""
    n = parse_int(value)
    return n if n is not None and INT4_MIN <= n <= INT4_MAX else None


def parse_counter_id(value):
    """A counters id from a path, or None when it cannot name a row."""
    n = parse_int(value)
    return n if n is not None and INT8_MIN <= n <= INT8_MAX else None


def page(limit, offset):
    """GET /items' `limit` and `offset` query values (None when absent) as (limit, offset):
    limit 10 by default and at most 100, offset 0 by default; None unless both are
    non-negative integers."""
    lim = 10 if limit is None else parse_int(limit)
    off = 0 if offset is None else parse_int(offset)
    if lim is None or off is None or lim < 0 or off < 0:
        return None
    return min(lim, 100), off


def item_fields(body, partial=False):
    """The {name, description, price} fields of a decoded JSON body. Without `partial`: name
    and price are required and description defaults to ""; with it, any of the three (a null
    counts as absent). Raises ValueError with the message for a 400 otherwise."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    out = {}
    for key in ("name", "description"):
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise ValueError(f"{key} must be a string")
            out[key] = body[key]
    price = body.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            raise ValueError("price must be a number")
        out["price"] = float(price)
    if not partial:
        if "name" not in out or "price" not in out:
            raise ValueError("name and price are required")
        out.setdefault("description", "")
    return out


def item_fields_json(raw, partial=False):
    """item_fields() of a raw JSON body (bytes or str)."""
    try:
        body = json.loads(raw)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        raise ValueError("body must be JSON") from None
    return item_fields(body, partial)


# ---------------------------------------------------------------- bodies


def hello_json():
    """GET /json: the current UTC time, ISO-8601 with microseconds."""
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"message": "hello", "ts": ts}


def sleep_json(mode):
    return {"slept_ms": SLEEP_MS, "mode": mode}


def item_json(row, zulu=False):
    """An items row (id, name, description, price, created_at) as JSON. created_at keeps the
    driver's UTC offset ("+00:00"), or with `zulu` is written with "Z"."""
    if zulu:
        created_at = row[4].astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    else:
        created_at = row[4].isoformat()
    return {
        "id": row[0],
        "name": row[1],
        "description": row[2],
        "price": float(row[3]),
        "created_at": created_at,
    }


class UploadDigest:
    """POST /upload: the sha256 and size of the bytes read, fed chunk by chunk."""

    def __init__(self):
        self._sha256 = hashlib.sha256()
        self._size = 0

    def update(self, chunk):
        self._sha256.update(chunk)
        self._size += len(chunk)

    def read_from(self, stream, chunk_size=65536):
        """Feeds a blocking file-like stream (a WSGI input) to its end; None has no bytes."""
        while stream is not None:
            chunk = stream.read(chunk_size)
            if not chunk:
                break
            self.update(chunk)
        return self

    def json(self):
        return {"sha256": self._sha256.hexdigest(), "size": self._size}


# ---------------------------------------------------------------- work


def sum_of_squares(n):
    """GET /cpu: the sum of i*i for 0 <= i < n, mod 2^64."""
    total = 0
    for i in range(n):
        total += i * i
    return total & MASK64


def zero_chunks():
    """GET /stream's body for a framework that streams from a generator."""
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


async def zero_chunks_async():
    """GET /stream's body for an ASGI framework that streams from an async generator."""
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK
        # Let the loop run between chunks: a send into an unpaused transport does not yield,
        # so without this a client that disconnects mid-stream is only noticed after all 160
        # chunks (asyncio then logs "socket.send() raised exception." for each one).
        await asyncio.sleep(0)


def temp_file_roundtrip():
    """POST /io-intensive's file part: writes a per-request 64 KiB temp file, reads it back,
    compares and deletes it; returns the bytes read. Blocking file calls: an async app runs
    it in a thread."""
    data = os.urandom(IO_FILE_BYTES)
    fd, path = tempfile.mkstemp(prefix="io-intensive-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            read_back = f.read()
    finally:
        os.unlink(path)
    if read_back != data:
        raise RuntimeError("temp file read back differs")
    return len(read_back)
