"""A plain-asyncio HTTP app (stdlib only) with anti-patterns the bundled apps lack, and clean
controls beside them. Every blocking call sits on a line marked `# BLOCKING: <name>` that the
diagnosis must name.
Clean (never flagged, at any concurrency):
  /ok          awaits asyncio.sleep(0.005)
  /fast, /ping answer at once (saturate the loop under load)
  /offload     reads a 1 MiB file in a thread (await asyncio.to_thread)
Blocking (always flagged, with the line):
  /cpu         burns ~30 ms of CPU                    -> CPU in burn_cpu
  /json        json.dumps of a large document         -> CPU, JSON advice
  /fetch       a blocking urllib call to a slow peer  -> network I/O
  /file        writes and fsyncs a temp file          -> file sync
  /read        reads a 64 MiB file                    -> file I/O
  /subprocess  subprocess.run of a short child        -> waits for a child
  /select      select.select with a 20 ms timeout     -> a wait on the loop
  /lock        takes a lock a thread holds for 40 ms  -> lock wait
Usage: async_app.py PORT"""
import asyncio
import http.server
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PORT = int(sys.argv[1])
# On disk rather than in memory (/tmp may be tmpfs), when the machine has the usual folder.
SCRATCH = tempfile.mkdtemp(prefix="async-app-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)


class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.02)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


slow = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
threading.Thread(target=slow.serve_forever, daemon=True).start()
SLOW_URL = f"http://127.0.0.1:{slow.server_address[1]}/"


def scratch_file(name, size):
    """The scratch file `name` of `size` bytes, written on first use (the warm-up's)."""
    path = os.path.join(SCRATCH, name)
    if not os.path.exists(path):
        with open(path + ".part", "wb") as f:
            f.write(os.urandom(size))
        os.rename(path + ".part", path)
    return path

BIG_DOC = [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"], "price": i * 1.5}
           for i in range(20_000)]
IDLE_PIPE = os.pipe()[0]
LOCK = threading.Lock()


def hold_lock():
    while True:
        with LOCK:
            time.sleep(0.04)
        time.sleep(0.01)


threading.Thread(target=hold_lock, daemon=True).start()


def burn_cpu():
    end = time.perf_counter() + 0.03
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def read_small():
    with open(scratch_file("small", 1 << 20), "rb") as f:
        return len(f.read())


async def handle_ok():
    await asyncio.sleep(0.005)
    return b"ok"


async def handle_fast():
    return b"ok"


async def handle_ping():
    return b"pong"


async def handle_offload():
    return str(await asyncio.to_thread(read_small)).encode()


async def handle_cpu():
    return str(burn_cpu()).encode()  # BLOCKING: cpu


async def handle_json():
    return str(len(json.dumps(BIG_DOC))).encode()  # BLOCKING: json


async def handle_fetch():
    with urllib.request.urlopen(SLOW_URL, timeout=5) as r:  # BLOCKING: fetch
        return r.read()


async def handle_file():
    # One file rewritten in place: a file made and removed per request would make unlink
    # the heavier call where the filesystem discards freed blocks (mounted with `discard`).
    with open(scratch_file("synced", 4096), "r+b") as f:
        f.write(os.urandom(4096))
        f.flush()
        os.fsync(f.fileno())  # BLOCKING: file
    return b"ok"


async def handle_read():
    with open(scratch_file("big", 64 << 20), "rb") as f:
        data = f.read()  # BLOCKING: read
    return str(len(data)).encode()


async def handle_subprocess():
    subprocess.run(["/bin/sleep", "0.02"], check=True)  # BLOCKING: subprocess
    return b"ok"


async def handle_select():
    ready, _, _ = select.select([IDLE_PIPE], [], [], 0.02)  # BLOCKING: select
    return str(len(ready)).encode()


async def handle_lock():
    with LOCK:  # BLOCKING: lock
        pass
    return b"ok"


ROUTES = {
    "/ok": handle_ok,
    "/fast": handle_fast,
    "/ping": handle_ping,
    "/offload": handle_offload,
    "/cpu": handle_cpu,
    "/json": handle_json,
    "/fetch": handle_fetch,
    "/file": handle_file,
    "/read": handle_read,
    "/subprocess": handle_subprocess,
    "/select": handle_select,
    "/lock": handle_lock,
}


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            handler = ROUTES.get(path)
            body = await handler() if handler else b"not found"
            status = b"200 OK" if handler else b"404 Not Found"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
try:
    asyncio.run(main())
finally:
    for name in os.listdir(SCRATCH):
        os.unlink(os.path.join(SCRATCH, name))
    os.rmdir(SCRATCH)
