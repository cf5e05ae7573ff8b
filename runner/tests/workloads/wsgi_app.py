"""A WSGI app for gunicorn's pre-fork workers: each request spends about 2 ms of CPU in work().
Run: python3 -m gunicorn -w 2 --chdir DIR wsgi_app:app"""
import time


def work():
    end = time.perf_counter() + 0.002
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def app(environ, start_response):
    body = str(work()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
