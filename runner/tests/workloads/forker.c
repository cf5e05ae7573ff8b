/* Fork-following workload: waits for SIGUSR1 (sent once the probes are attached), then
 * forks a child that burns CPU in child_burn for argv[1] seconds while the parent waits
 * for it. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void child_burn(double seconds) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        for (int i = 0; i < 100000; i++) sink += i;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    sigset_t usr1;
    int sig;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, 0);
    sigwait(&usr1, &sig);
    pid_t pid = fork();
    if (pid == 0) {
        child_burn(seconds);
        _exit(0);
    }
    waitpid(pid, 0, 0);
    return 0;
}
