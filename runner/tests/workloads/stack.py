"""Sleeps inside a known stack for walkers to read: <module> -> outer -> middle (called by
map, from C) -> Holder.__init__ (a constructor call specialized by then, which 3.13+ runs
through a hidden shim frame) -> Holder.gen (a generator) -> leaf, which prints "ready" and
sleeps."""
import time


def leaf():
    print("ready", flush=True)
    time.sleep(60)


class Holder:
    def __init__(self, last):
        if last:
            next(self.gen())

    def gen(self):
        yield leaf()


def middle(_):
    for i in range(100):
        Holder(i == 99)


def outer():
    return list(map(middle, [0]))


outer()
