/* Noise outside the target: spins, calling getppid, until killed. With the argument
 * `thread`, a second thread does it while the first only waits for it. */
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void outsider_spin(void) {
    for (long i = 0; i < 100000; i++) sink += i;
}

static void *outsider_loop(void *arg) {
    for (;;) {
        outsider_spin();
        syscall(SYS_getppid);
    }
    return arg;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "thread") == 0) {
        pthread_t thread;
        pthread_create(&thread, NULL, outsider_loop, NULL);
        pthread_join(thread, NULL);
    }
    outsider_loop(NULL);
    return 0;
}
