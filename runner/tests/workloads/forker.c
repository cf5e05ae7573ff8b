/* Fork-following workload: waits argv[1] seconds, then forks a child that burns CPU in
 * child_burn for one second while the parent waits for it. */
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void child_burn(void) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        for (int i = 0; i < 100000; i++) sink += i;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < 1.0);
}

int main(int argc, char **argv) {
    double delay = argc > 1 ? atof(argv[1]) : 1.0;
    struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
    nanosleep(&ts, 0);
    pid_t pid = fork();
    if (pid == 0) {
        child_burn();
        _exit(0);
    }
    waitpid(pid, 0, 0);
    return 0;
}
