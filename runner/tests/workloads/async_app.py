"""A plain-asyncio HTTP app (stdlib only) with anti-patterns the bundled apps lack:
  /ping   answers at once                        -> fine
  /ok     awaits asyncio.sleep(0.005)            -> fine
  /cpu    burns ~30 ms of CPU in the handler     -> a CPU-bound stall
  /fetch  a blocking urllib call to a slow peer  -> blocked in network I/O
  /file   writes and fsyncs a temp file          -> blocking file I/O
Usage: async_app.py PORT"""
import asyncio
import http.server
import os
import sys
import tempfile
import threading
import time
import urllib.request

PORT = int(sys.argv[1])


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


def burn_cpu():
    end = time.perf_counter() + 0.03
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


async def handle_ping():
    return b"pong"


async def handle_ok():
    await asyncio.sleep(0.005)
    return b"ok"


async def handle_cpu():
    return str(burn_cpu()).encode()


async def handle_fetch():
    with urllib.request.urlopen(SLOW_URL, timeout=5) as r:
        return r.read()


async def handle_file():
    with tempfile.NamedTemporaryFile(dir="/var/tmp") as f:
        f.write(os.urandom(4096))
        f.flush()
        os.fsync(f.fileno())
    return b"ok"


ROUTES = {
    "/ping": handle_ping,
    "/ok": handle_ok,
    "/cpu": handle_cpu,
    "/fetch": handle_fetch,
    "/file": handle_file,
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


asyncio.run(main())
