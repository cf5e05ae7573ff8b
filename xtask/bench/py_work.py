"""Probe-overhead bench, Python side: argv[1] rounds of pure-Python arithmetic, 30 frames
deep, on CPU argv[2]; prints the time the work took."""
import os
import sys
import time


def crunch(n):
    total = 0
    for i in range(n):
        total += i * 7 + (i >> 3)
    return total


def nest(depth, n):
    if depth == 0:
        return crunch(n)
    return nest(depth - 1, n)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    os.sched_setaffinity(0, {int(sys.argv[2]) if len(sys.argv) > 2 else 1})
    start = time.monotonic_ns()
    for _ in range(rounds):
        nest(30, 100_000)
    print(f"elapsed_ns={time.monotonic_ns() - start}")


main()
