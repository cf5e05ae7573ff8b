/* The quick start's demo workload: argv[1] seconds of a little of everything the probes
 * see: CPU in two named functions, sleeps, and syscalls. Built with frame pointers. */
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void compute_hot(void) {
    for (long i = 0; i < 3000000; i++) sink += i;
}

__attribute__((noinline)) void compute_warm(void) {
    for (long i = 0; i < 1000000; i++) sink += i ^ 7;
}

__attribute__((noinline)) void wait_for_io(void) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, 0);
}

__attribute__((noinline)) void ask_the_kernel(void) {
    for (int i = 0; i < 2000; i++) syscall(SYS_getppid);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 4.0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        compute_hot();
        compute_warm();
        wait_for_io();
        ask_the_kernel();
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    return 0;
}
