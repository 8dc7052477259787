// The guardian (see cshim.h): a small process that outlives a supervisor killed without a word and
// kills what its workers left behind. It holds the read end of a pipe whose write end only the
// supervisor holds, and blocks reading it: the supervisor writes the process groups it starts and
// reaps, and the end of the pipe (EOF) means that no process holds the write end any more, whatever
// killed it. Everything here after the fork is plain system calls on static memory: no malloc, no
// stdio, no opendir (the fork may come from a supervisor with other threads).
#define _GNU_SOURCE
#include "cshim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031
#endif

// PID_MAX_LIMIT on 64-bit Linux: no pid (hence no process group id) is this large.
#define GUARD_PID_LIMIT (1 << 22)
// Process groups the supervisor started and has not reaped yet: a bit per pid. Untouched pages of
// it are never resident; a thousand workers with nearby pids touch a page or two.
static uint64_t groups[GUARD_PID_LIMIT / 64];
static int32_t lowest_group = GUARD_PID_LIMIT, highest_group = 0;
// The processes it has killed, so that one seen again while it dies is counted once.
static uint64_t killed_pids[GUARD_PID_LIMIT / 64];
// The supervisor wrote CSHIM_GUARDIAN_STOPPING: the end of the pipe is a normal stop, not a death.
static int stopping = 0;

// "\0POOLVISOR_RUN=<token>\0": an entry of a process's environment, wherever it is.
static char needle[1 + sizeof(CSHIM_GUARDIAN_VARIABLE) + CSHIM_GUARDIAN_TOKEN_LENGTH + 1];
static size_t needle_length;
static char buffer[64 * 1024];

static void note(int32_t record) {
    if (record == CSHIM_GUARDIAN_STOPPING) {
        stopping = 1;
        return;
    }
    int32_t pid = record < 0 ? -record : record;
    if (pid <= 1 || pid >= GUARD_PID_LIMIT) return;
    if (record > 0) {
        groups[pid / 64] |= (uint64_t)1 << (pid % 64);
        if (pid < lowest_group) lowest_group = pid;
        if (pid > highest_group) highest_group = pid;
    } else {
        groups[pid / 64] &= ~((uint64_t)1 << (pid % 64));
    }
}

// SIGKILL to every process group still listed; a group that no longer exists is forgotten.
// Returns how many groups still existed.
static int kill_groups(void) {
    int existed = 0;
    for (int32_t pid = lowest_group; pid <= highest_group; pid++) {
        if (groups[pid / 64] == 0) {
            pid |= 63;
            continue;
        }
        if (!(groups[pid / 64] & ((uint64_t)1 << (pid % 64)))) continue;
        if (kill(-pid, SIGKILL) == 0) {
            existed++;
        } else if (errno == ESRCH) {
            groups[pid / 64] &= ~((uint64_t)1 << (pid % 64));
        }
    }
    return existed;
}

// Whether the environment readable from `fd` holds the needle. The stream is read as if a NUL came
// before it, so the first entry counts too; the needle has NUL only at its ends, so on a mismatch
// only a NUL can start the next candidate.
static int environment_marked(int fd) {
    size_t matched = 1;
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        for (ssize_t i = 0; i < n; i++) {
            char c = buffer[i];
            if (c == needle[matched]) {
                if (++matched == needle_length) return 1;
            } else {
                matched = c == '\0' ? 1 : 0;
            }
        }
    }
}

// One pass over /proc: SIGKILL to every process whose environment carries the token. The /proc/PID
// directory is opened first and the signal sent through it (pidfd_send_signal takes such an fd), so a
// pid reused between the read and the kill is never hit. Returns how many marked processes it found.
static int kill_marked(pid_t self, pid_t parent, int *killed) {
    int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0) return 0;
    int found = 0;
    static char entries[32 * 1024];
    for (;;) {
        long n = syscall(SYS_getdents64, proc, entries, sizeof(entries));
        if (n <= 0) break;
        for (long offset = 0; offset < n;) {
            // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
            unsigned short reclen;
            memcpy(&reclen, entries + offset + 16, sizeof(reclen));
            const char *name = entries + offset + 19;
            offset += reclen;
            pid_t pid = 0;
            const char *p = name;
            for (; *p >= '0' && *p <= '9'; p++) pid = pid * 10 + (*p - '0');
            if (*p != '\0' || pid <= 1 || pid == self || pid == parent) continue;
            int dir = openat(proc, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dir < 0) continue;
            int env = openat(dir, "environ", O_RDONLY | O_CLOEXEC);
            if (env >= 0) {
                int marked = environment_marked(env);
                close(env);
                if (marked) {
                    found++;
                    long rc = syscall(SYS_pidfd_send_signal, dir, SIGKILL, NULL, 0);
                    if (rc < 0 && errno == ENOSYS) rc = kill(pid, SIGKILL);  // before Linux 5.1
                    if (rc == 0 && pid < GUARD_PID_LIMIT && !(killed_pids[pid / 64] & ((uint64_t)1 << (pid % 64)))) {
                        killed_pids[pid / 64] |= (uint64_t)1 << (pid % 64);
                        (*killed)++;
                    }
                }
            }
            close(dir);
        }
    }
    close(proc);
    return found;
}

static int64_t monotonic_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void write_text(const char *text) {
    ssize_t unused = write(2, text, strlen(text));
    (void)unused;
}

static void write_number(char *out, long value) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value > 0);
    while (n > 0) *out++ = digits[--n];
    *out = '\0';
}

// Blanks this process's environment strings where /proc/self/environ reads them (fields 50 and 51
// of /proc/self/stat: env_start, env_end). The guardian is a copy of poolvisor, whose environment
// may carry another poolvisor's token (poolvisor run as a worker): that guardian must not kill this
// one before it has done its job. Nothing here reads the environment.
static void forget_environment(void) {
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
    close(fd);
    if (n <= 0) return;
    buffer[n] = '\0';
    char *p = strrchr(buffer, ')');
    if (p == NULL) return;
    // After ") " comes field 3 (state); env_start is field 50.
    int field = 2;
    unsigned long values[2] = {0, 0};
    for (p++; *p != '\0' && field < 51; p++) {
        if (*p != ' ') continue;
        field++;
        if (field == 50 || field == 51) {
            unsigned long v = 0;
            for (char *d = p + 1; *d >= '0' && *d <= '9'; d++) v = v * 10 + (unsigned long)(*d - '0');
            values[field - 50] = v;
        }
    }
    if (values[0] != 0 && values[1] > values[0] && values[1] - values[0] < (64UL << 20)) {
        memset((void *)values[0], 0, values[1] - values[0]);
    }
}

static void guardian_main(int in, const char *token, pid_t supervisor) __attribute__((noreturn));
static void guardian_main(int in, const char *token, pid_t supervisor) {
    // Its own session: a terminal's ^C or hang-up, or a kill of the supervisor's process group, is
    // not for it. Only SIGKILL ends it early; the end of the pipe is what it waits for.
    setsid();
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    prctl(PR_SET_NAME, (unsigned long)CSHIM_GUARDIAN_NAME, 0, 0, 0);
    struct sigaction ignore;
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    int ignored[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) sigaction(ignored[i], &ignore, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chdir("/") < 0) { /* nothing holds a directory busy either way */ }
    forget_environment();
    // Keep stdio (stderr for the one line it may write) and the pipe; close everything else.
    if (in != 3) {
        if (dup3(in, 3, O_CLOEXEC) < 0) _exit(125);
        in = 3;
    }
    if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0) {
        for (int fd = 4; fd < 65536; fd++) close(fd);
    }
    needle[0] = '\0';
    memcpy(needle + 1, CSHIM_GUARDIAN_VARIABLE "=", sizeof(CSHIM_GUARDIAN_VARIABLE));
    memcpy(needle + sizeof(CSHIM_GUARDIAN_VARIABLE) + 1, token, CSHIM_GUARDIAN_TOKEN_LENGTH);
    needle_length = sizeof(CSHIM_GUARDIAN_VARIABLE) + 1 + CSHIM_GUARDIAN_TOKEN_LENGTH;
    needle[needle_length++] = '\0';

    // Until the last holder of the write end is gone: records of 4 bytes (whole records only:
    // the supervisor writes each one at once, and a pipe write of 4 bytes is atomic).
    static int32_t records[4096];
    size_t carried = 0;
    for (;;) {
        ssize_t n = read(in, (char *)records + carried, sizeof(records) - carried);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t total = carried + (size_t)n;
        size_t whole = total / sizeof(int32_t);
        for (size_t i = 0; i < whole; i++) note(records[i]);
        carried = total - whole * sizeof(int32_t);
        if (carried > 0) memmove(records, (char *)records + whole * sizeof(int32_t), carried);
    }
    close(in);

    // A normal stop (its workers are gone; it waits for us) or a death: the same sweep, but only a
    // death is worth a line of our own (the supervisor logs what a stop's sweep killed).
    pid_t self = getpid();
    // Kill, then look again until a pass finds nothing marked (a process forking while it is killed
    // leaves a new one), at most for about 900 ms.
    int killed = 0;
    int64_t deadline = monotonic_ms() + 900;
    for (int round = 0;; round++) {
        int groups_left = kill_groups();
        int found = kill_marked(self, getppid(), &killed);
        if ((found == 0 && (groups_left == 0 || round >= 2)) || monotonic_ms() >= deadline) break;
        struct timespec pause = {0, (round < 5 ? 2 : 10) * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (!stopping && killed > 0) {
        char line[160], number[24];
        strcpy(line, CSHIM_GUARDIAN_NAME ": poolvisor (pid ");
        write_number(number, supervisor);
        strcat(line, number);
        strcat(line, ") is gone; killed ");
        write_number(number, killed);
        strcat(line, number);
        strcat(line, killed == 1 ? " process its workers had left\n" : " processes its workers had left\n");
        write_text(line);
    }
    _exit(killed > 255 ? 255 : killed);
}

// The pipe: the read end (for the guardian) and the write end, non-blocking, both close-on-exec.
static int guardian_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    // Room for 262,144 records, so a start wave never fills it (best effort: the default is 64 KiB).
    fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    return 0;
}

int cshim_guardian_start(int server, const char *token, int *write_fd, pid_t *guardian_pid) {
    if (strlen(token) != CSHIM_GUARDIAN_TOKEN_LENGTH) return -EINVAL;
    int fds[2];
    int rc = guardian_pipe(fds);
    if (rc < 0) return rc;
    pid_t supervisor = getpid();
    pid_t pid = server >= 0 ? cshim_spawn_server_guardian(server, fds[0], token) : -ENOSYS;
    if (pid <= 0) {
        // No spawn server (or it failed): a fork of this process. The child runs only system calls.
        sigset_t all, saved;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        pid = fork();
        if (pid == 0) {
            close(fds[1]);
            guardian_main(fds[0], token, supervisor);
        }
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (pid < 0) {
            close(fds[0]);
            close(fds[1]);
            return -e;
        }
    }
    close(fds[0]);
    *write_fd = fds[1];
    *guardian_pid = pid;
    return 0;
}

// In the spawn server: a fork of it (the server's pages, not the supervisor's, are what it shares)
// that is the supervisor's child (CLONE_PARENT), so the supervisor reaps it and sees it die.
pid_t cshim_guardian_clone(int in, const char *token, pid_t supervisor) {
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), NULL, NULL, NULL, NULL);
    if (pid == 0) guardian_main(in, token, supervisor);
    return pid < 0 ? -errno : (pid_t)pid;
}

int cshim_guardian_send(int write_fd, const int32_t *records, int count) {
    if (count <= 0 || count > CSHIM_GUARDIAN_RECORDS_AT_ONCE) return -EINVAL;
    ssize_t n;
    do { n = write(write_fd, records, (size_t)count * sizeof(int32_t)); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}
