"""Prints, for a few functions, what CPython itself says about each instruction's line
(co_lines) next to the raw location table, as JSON. Compared by runner/tests/python.rs."""
import json


def simple():
    x = 1
    return x


def branches(a):
    if a:
        b = [i
             for i in range(3)]
    else:
        b = None
    try:
        c = 1 / a
    except ZeroDivisionError:
        c = 0
    return b, c


def long_jump():
    x = 0
    # A far line below makes a long line delta.
    x += 1






















































































































































    return x


class Nested:
    def method(self):
        def inner():
            return (1 +
                    2)
        return inner


out = []
for fn in [simple, branches, long_jump, Nested.method, Nested().method(), json.dumps]:
    co = fn.__code__
    out.append({
        "name": co.co_qualname,
        "firstlineno": co.co_firstlineno,
        "linetable": co.co_linetable.hex(),
        "lines": [[s, e, line] for s, e, line in co.co_lines()],
    })
print(json.dumps(out))
