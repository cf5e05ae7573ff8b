/* On-CPU workload: about 75% of the CPU in burn_major, 25% in burn_minor, for argv[1] seconds. */
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) void burn_major(long n) {
    for (long i = 0; i < n; i++) sink += i;
}

__attribute__((noinline)) void burn_minor(long n) {
    for (long i = 0; i < n; i++) sink += i ^ 3;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        burn_major(3000000);
        burn_minor(1000000);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    return 0;
}
