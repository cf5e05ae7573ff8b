/* Off-CPU workload: sleeps 20 x 50 ms in nap_delta. */
#include <time.h>

__attribute__((noinline)) void nap_delta(void) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, 0);
}

int main(void) {
    for (int i = 0; i < 20; i++) nap_delta();
    return 0;
}
