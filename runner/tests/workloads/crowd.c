/* Run-queue workload: argv[1] busy threads pinned to CPU 0 for argv[2] seconds. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

static double seconds;
volatile unsigned long sink;

static double elapsed(struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

static void *spin(void *arg) {
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (elapsed(&start) < seconds)
        for (int i = 0; i < 10000; i++) sink += i;
    return arg;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    seconds = argc > 2 ? atof(argv[2]) : 3.0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof(set), &set); /* inherited by the threads */
    pthread_t ids[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&ids[i], 0, spin, 0);
    for (int i = 0; i < threads && i < 64; i++) pthread_join(ids[i], 0);
    return 0;
}
