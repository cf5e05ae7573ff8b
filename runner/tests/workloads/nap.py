"""nap_gamma sleeps 20 x 50 ms in time.sleep, called from main."""
import time


def nap_gamma():
    time.sleep(0.05)


def main():
    for _ in range(20):
        nap_gamma()


if __name__ == "__main__":
    main()
