"""crunch_alpha takes about 70% of the CPU and crunch_beta about 30%, both called from main."""
import sys
import time


def crunch_alpha(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def crunch_beta(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def main(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        crunch_alpha(7000)
        crunch_beta(3000)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
