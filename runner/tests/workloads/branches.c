/* On-CPU workload with 4096 distinct user stacks: main walks call paths of DEPTH steps, each
 * step through left() or right() by one bit of the path number, and spins at the leaf. Runs
 * for argv[1] seconds. */
#include <stdlib.h>
#include <time.h>

#define DEPTH 12

volatile unsigned long sink;

void step(unsigned path, int depth);

__attribute__((noinline)) void left(unsigned path, int depth) { step(path, depth); }

__attribute__((noinline)) void right(unsigned path, int depth) { step(path, depth); }

__attribute__((noinline)) void step(unsigned path, int depth) {
    if (depth == 0) {
        for (long i = 0; i < 20000; i++) sink += i;
        return;
    }
    if (path & 1)
        left(path >> 1, depth - 1);
    else
        right(path >> 1, depth - 1);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    struct timespec start, now;
    unsigned path = 0;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        step(path++ % (1u << DEPTH), DEPTH);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    return 0;
}
