/*
 * scripts/bench-worker.c: the worker every contender of scripts/bench runs.
 *
 * On start it reads CLOCK_MONOTONIC, then sends one datagram "PID NS\n" (its pid and that timestamp in
 * nanoseconds) to the UNIX datagram socket named by BENCH_SOCKET, then sleeps in pause() until a signal.
 * SIGTERM (or SIGINT) makes it exit 0 at once, even while the send is still blocked on a full socket
 * queue. Without BENCH_SOCKET (or if the socket is gone) it sends nothing and just waits.
 *
 * With BENCH_EXIT=CODE it exits with that code right after its report instead of waiting: a crash-looping
 * worker (like /bin/false) whose every start the harness still sees.
 *
 * The send is blocking on purpose: net.unix.max_dgram_qlen is small (10 on the bench machine), and a
 * blocking sender waits for the reader instead of losing its report. The harness reads continuously.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

int main(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);

    /* A supervisor may hand us a blocked mask or ignored dispositions: take SIGTERM/SIGINT back. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGTERM);
    sigaddset(&unblock, SIGINT);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);

    const char *path = getenv("BENCH_SOCKET");
    if (path != NULL && path[0] != '\0' && strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path)) {
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            struct sockaddr_un addr;
            memset(&addr, 0, sizeof addr);
            addr.sun_family = AF_UNIX;
            strcpy(addr.sun_path, path);
            char msg[64];
            long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
            int len = snprintf(msg, sizeof msg, "%ld %lld\n", (long)getpid(), ns);
            while (sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&addr, sizeof addr) < 0 && errno == EINTR) {
            }
            close(fd);
        }
    }

    const char *exit_code = getenv("BENCH_EXIT");
    if (exit_code != NULL && exit_code[0] != '\0') {
        _exit(atoi(exit_code));
    }

    for (;;) {
        pause();
    }
}
