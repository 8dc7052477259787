/*
 * scripts/bench-floor.c: the floor of scripts/bench, the least a supervisor can do.
 *
 *   bench-floor N WORKER_PATH
 *
 * posix_spawns N copies of WORKER_PATH (no arguments, this process's environment), sleeps on a
 * signalfd, reaps and respawns at once any worker that exits, and on SIGTERM (or SIGINT) sends SIGTERM
 * to every worker, waits until all of them have exited, and exits 0. No logging, no backoff, no
 * readiness, no process groups: whatever poolvisor does on top of this is its overhead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pid_t *pids;
static long n_workers;
static const char *worker;
static posix_spawnattr_t attr;

static pid_t spawn_one(void) {
    char *argv[] = {(char *)worker, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, worker, NULL, &attr, argv, environ);
    if (err != 0) {
        fprintf(stderr, "bench-floor: posix_spawn %s: %s\n", worker, strerror(err));
        return -1;
    }
    return pid;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bench-floor N WORKER_PATH\n");
        return 2;
    }
    n_workers = strtol(argv[1], NULL, 10);
    worker = argv[2];
    if (n_workers <= 0) {
        fprintf(stderr, "bench-floor: N must be positive\n");
        return 2;
    }
    pids = calloc((size_t)n_workers, sizeof *pids);
    if (pids == NULL) {
        perror("bench-floor: calloc");
        return 1;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        perror("bench-floor: sigprocmask");
        return 1;
    }
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("bench-floor: signalfd");
        return 1;
    }

    /* Workers start with an empty mask and default dispositions. */
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &mask);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    long live = 0;
    for (long i = 0; i < n_workers; i++) {
        pids[i] = spawn_one();
        if (pids[i] > 0) {
            live++;
        }
    }

    int stopping = 0;
    struct signalfd_siginfo infos[16];
    while (!stopping || live > 0) {
        ssize_t got = read(sfd, infos, sizeof infos);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("bench-floor: read signalfd");
            return 1;
        }
        int chld = 0;
        for (size_t k = 0; k < (size_t)got / sizeof infos[0]; k++) {
            if (infos[k].ssi_signo == SIGCHLD) {
                chld = 1;
            } else if (!stopping) {
                stopping = 1;
                for (long i = 0; i < n_workers; i++) {
                    if (pids[i] > 0) {
                        kill(pids[i], SIGTERM);
                    }
                }
            }
        }
        if (!chld) {
            continue;
        }
        pid_t pid;
        int status;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (long i = 0; i < n_workers; i++) {
                if (pids[i] == pid) {
                    pids[i] = stopping ? 0 : spawn_one();
                    if (pids[i] <= 0) {
                        live--;
                    }
                    break;
                }
            }
        }
    }
    return 0;
}
