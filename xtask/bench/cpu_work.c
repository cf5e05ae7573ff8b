/* Probe-overhead bench, CPU-bound side: argv[1] iterations of arithmetic on CPU argv[2];
 * prints the time the work took. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) void crunch(long n) {
    for (long i = 0; i < n; i++) sink += i * 7 + (i >> 3);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 400000000L;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(argc > 2 ? atoi(argv[2]) : 1, &set);
    sched_setaffinity(0, sizeof(set), &set);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    crunch(n);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("elapsed_ns=%ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec));
    return 0;
}
