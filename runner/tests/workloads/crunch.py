"""crunch_alpha takes about 70% of the CPU and crunch_beta about 30%, both called from main;
meanwhile a thread sleeps 40 x 50 ms in nap_delta, called from sleeper."""
import sys
import threading
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


def nap_delta():
    time.sleep(0.05)


def sleeper():
    for _ in range(40):
        nap_delta()


def main(seconds):
    napping = threading.Thread(target=sleeper)
    napping.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        crunch_alpha(7000)
        crunch_beta(3000)
    napping.join()
    # Alive a little longer, so the last stacks are named before the interpreter tears
    # their code objects down.
    time.sleep(0.3)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
