/* Noise outside the target: spins, calling getppid, until killed. */
#include <sys/syscall.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void outsider_spin(void) {
    for (long i = 0; i < 100000; i++) sink += i;
}

int main(void) {
    for (;;) {
        outsider_spin();
        syscall(SYS_getppid);
    }
}
