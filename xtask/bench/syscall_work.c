/* Probe-overhead bench, syscall-heavy side: argv[1] getppid calls on CPU argv[2], each after
 * argv[3] iterations of user work (the default makes about 1M syscalls/s here); prints the
 * time they took. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 2000000L;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(argc > 2 ? atoi(argv[2]) : 1, &set);
    sched_setaffinity(0, sizeof(set), &set);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    long work = argc > 3 ? atol(argv[3]) : 600;
    for (long i = 0; i < n; i++) {
        for (long j = 0; j < work; j++) sink += j;
        syscall(SYS_getppid);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("elapsed_ns=%ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec));
    return 0;
}
