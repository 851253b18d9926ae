/*
 * sync_delay.so (LD_PRELOAD): every fsync(2) and fdatasync(2) of the process first waits
 * SYNC_DELAY_US microseconds, then syncs for real.
 *
 * For `make bench-apply --sync-latency-ms`: the replicas of this machine sync in about 0.1 ms,
 * an EBS volume in about a millisecond ("single-digit millisecond latency", Amazon EBS User
 * Guide, gp3). A serial applier waits for every one of its syncs; a parallel one commits in
 * groups and shares them. This shows that difference on a machine whose disk hides it; it is
 * an emulation of storage latency, not a measurement of EBS.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void wait_for_storage(void)
{
    const char *text = getenv("SYNC_DELAY_US");
    long us = text ? atol(text) : 0;
    if (us > 0) {
        struct timespec pause = {us / 1000000L, (us % 1000000L) * 1000L};
        nanosleep(&pause, NULL);
    }
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    wait_for_storage();
    return real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    wait_for_storage();
    return real(fd);
}
