// The spawn server (see cshim.h): a forked copy of the supervisor that holds almost no fds and
// spawns workers with clone(CLONE_PARENT | CLONE_VM | CLONE_VFORK), so that each worker is the
// supervisor's child, but its exec has only the server's few fds to close instead of one pipe per
// worker. Everything here after the fork is plain system calls on static memory: the server never
// touches malloc, which another thread of the supervisor may have held at the fork.
#define _GNU_SOURCE
#include "cshim.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define WIRE_MAGIC 0x70767370u  // "pvsp"
#define WIRE_FORK_MAGIC 0x7076666bu  // "pvfk": run the fork entry in a fork of the server
#define WIRE_GUARD_MAGIC 0x70766764u  // "pvgd": start the guardian (guardian.c) with this pipe
#define MAX_FDS 16
#define MAX_STRINGS 65536
#define MAX_PAYLOAD (8u << 20)

// The fixed part of a request; the strings, groups and CPU mask follow, and the fds (stdin, stdout,
// stderr, then the cgroup files) travel as SCM_RIGHTS with its first byte.
typedef struct {
    uint32_t magic;
    uint32_t payload;  // bytes after this header
    int32_t nfds, argc, envc, has_cwd;
    int32_t set_ids, ngroups, set_nice, nice, umask, pdeathsig, cpu_mask_size;
    uint32_t uid, gid;
    int64_t nofile_soft;
} wire_request;

typedef struct {
    int32_t pid, step, error;
} wire_reply;

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

// --- the server ---------------------------------------------------------------------------------

// Set before the server is forked; the server keeps the value it was forked with.
static int (*fork_entry)(void) = NULL;

void cshim_spawn_server_set_fork_entry(int (*entry)(void)) { fork_entry = entry; }

// A fork of the server (glibc's fork, so the child's thread state is its own) runs the fork entry with
// fds[0] as stdin and fds[1] as stdout, and _exits with what it returns. The server answers with the
// child's pid, then waits for it and answers again with its wait status (in `step`): the caller reads
// both, in order, and may kill the child in between.
static void serve_fork(int sock, const int *fds, int nfds) {
    wire_reply reply = {0, CSHIM_SPAWN_OK, 0};
    pid_t pid = -1;
    if (fork_entry == NULL || nfds != 2) {
        reply.step = CSHIM_SPAWN_FAILED_EXEC;
        reply.error = fork_entry == NULL ? ENOSYS : EPROTO;
    } else {
        pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);  // the server dies with the supervisor
            prctl(PR_SET_NAME, (unsigned long)"poolvisor-parse", 0, 0, 0);
            if (dup2(fds[0], 0) < 0 || dup2(fds[1], 1) < 0) _exit(125);
            close(sock);
            close(fds[0]);
            close(fds[1]);
            _exit(fork_entry());
        }
        if (pid < 0) {
            reply.step = CSHIM_SPAWN_FAILED_FORK;
            reply.error = errno;
        } else {
            reply.pid = pid;
        }
    }
    for (int i = 0; i < nfds; i++) close(fds[i]);
    if (write_all(sock, &reply, sizeof(reply)) < 0) _exit(0);
    if (pid <= 0) return;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) { status = 0x7f00; break; }  // cannot happen for our own child
    }
    wire_reply done = {pid, status, 0};
    if (write_all(sock, &done, sizeof(done)) < 0) _exit(0);
}

static char payload[MAX_PAYLOAD];
static char *argv_buf[MAX_STRINGS + 1];
static char *envp_buf[MAX_STRINGS + 1];
static char child_stack[256 * 1024] __attribute__((aligned(16)));

typedef struct {
    const cshim_spawn_request *req;
    pid_t parent;
    volatile int step;
    volatile int error;
} child_args;

static int child_main(void *arg) {
    child_args *a = arg;
    cshim_spawn_child(a->req, a->parent, &a->step, &a->error);
}

// Takes `n` NUL-terminated strings from *cursor into `out` (NULL-terminated); -1 if they overrun.
static int take_strings(char **cursor, char *end, int n, char **out) {
    for (int i = 0; i < n; i++) {
        char *nul = memchr(*cursor, 0, (size_t)(end - *cursor));
        if (nul == NULL) return -1;
        out[i] = *cursor;
        *cursor = nul + 1;
    }
    out[n] = NULL;
    return 0;
}

static void serve(int sock, pid_t parent) __attribute__((noreturn));
static void serve(int sock, pid_t parent) {
    for (;;) {
        wire_request h;
        int fds[MAX_FDS];
        int nfds = 0;
        char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
        ssize_t r;
        do { r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL); } while (r < 0 && errno == EINTR);
        if (r <= 0) _exit(0);  // the supervisor closed its end, or is gone
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < n && nfds < MAX_FDS; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            }
        }
        if ((size_t)r == sizeof(h) && h.magic == WIRE_FORK_MAGIC && h.payload == 0 && nfds == h.nfds) {
            serve_fork(sock, fds, nfds);
            continue;
        }
        if ((size_t)r == sizeof(h) && h.magic == WIRE_GUARD_MAGIC && h.payload == CSHIM_GUARDIAN_TOKEN_LENGTH && nfds == 1) {
            char token[CSHIM_GUARDIAN_TOKEN_LENGTH + 1];
            if (read_all(sock, token, CSHIM_GUARDIAN_TOKEN_LENGTH) < 0) _exit(0);
            token[CSHIM_GUARDIAN_TOKEN_LENGTH] = '\0';
            pid_t pid = cshim_guardian_clone(fds[0], token, parent);
            close(fds[0]);
            wire_reply reply = {pid > 0 ? pid : 0, pid > 0 ? CSHIM_SPAWN_OK : CSHIM_SPAWN_FAILED_FORK, pid > 0 ? 0 : -pid};
            if (write_all(sock, &reply, sizeof(reply)) < 0) _exit(0);
            continue;
        }
        wire_reply reply = {0, CSHIM_SPAWN_OK, 0};
        int bad = (size_t)r != sizeof(h) || h.magic != WIRE_MAGIC || h.payload > MAX_PAYLOAD || nfds != h.nfds || nfds < 3 ||
                  h.argc < 1 || h.argc > MAX_STRINGS || h.envc < 0 || h.envc > MAX_STRINGS || h.ngroups < 0 || h.ngroups > 65536 ||
                  h.cpu_mask_size < 0;
        if (!bad && read_all(sock, payload, h.payload) < 0) _exit(0);
        if (!bad) {
            char *cursor = payload, *end = payload + h.payload;
            char *path = NULL, *cwd = NULL;
            char *one[2];
            bad = take_strings(&cursor, end, 1, one) < 0;
            path = one[0];
            if (!bad && h.has_cwd) { bad = take_strings(&cursor, end, 1, one) < 0; cwd = one[0]; }
            bad = bad || take_strings(&cursor, end, h.argc, argv_buf) < 0 || take_strings(&cursor, end, h.envc, envp_buf) < 0;
            size_t groups_bytes = (size_t)h.ngroups * sizeof(unsigned int);
            // The groups are 4-byte aligned in the payload (the client pads to that).
            while (!bad && ((uintptr_t)cursor & 3u) != 0) cursor++;
            bad = bad || (size_t)(end - cursor) < groups_bytes + (size_t)h.cpu_mask_size;
            if (!bad) {
                cshim_spawn_request req = {
                    .path = path, .argv = argv_buf, .envp = envp_buf, .cwd = cwd,
                    .stdin_fd = fds[0], .stdout_fd = fds[1], .stderr_fd = fds[2],
                    .pdeathsig = h.pdeathsig, .nofile_soft = h.nofile_soft,
                    .set_ids = h.set_ids, .uid = h.uid, .gid = h.gid,
                    .groups = (const unsigned int *)cursor, .ngroups = h.ngroups,
                    .set_nice = h.set_nice, .nice = h.nice, .umask = h.umask,
                    .cpu_mask = h.cpu_mask_size > 0 ? (const unsigned char *)(cursor + groups_bytes) : NULL,
                    .cpu_mask_size = h.cpu_mask_size,
                    .cgroup_fds = fds + 3, .ncgroup_fds = nfds - 3,
                };
                child_args a = {.req = &req, .parent = parent, .step = CSHIM_SPAWN_OK, .error = 0};
                pid_t pid = clone(child_main, child_stack + sizeof(child_stack),
                                  CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, &a);
                if (pid < 0) {
                    reply.step = CSHIM_SPAWN_FAILED_FORK;
                    reply.error = errno;
                } else {
                    reply.pid = pid;  // a failed child is the supervisor's to reap
                    reply.step = a.step;
                    reply.error = a.error;
                }
            }
        }
        if (bad) {
            reply.step = CSHIM_SPAWN_FAILED_SERVER;
            reply.error = EPROTO;
        }
        for (int i = 0; i < nfds; i++) close(fds[i]);
        if (write_all(sock, &reply, sizeof(reply)) < 0) _exit(0);
    }
}

int cshim_spawn_server_start(pid_t *server_pid) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
    cshim_spawn_prepare();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    if (pid == 0) {
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent) _exit(0);
        prctl(PR_SET_NAME, (unsigned long)"poolvisor-spawn", 0, 0, 0);
        // Keep stdio (a worker's are replaced anyway) and the socket, at 3; close everything else.
        int sock = sv[1] == 3 ? 3 : dup3(sv[1], 3, O_CLOEXEC);
        if (sock < 0) _exit(1);
        if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0) {
            for (int fd = 4; fd < 65536; fd++) close(fd);
        }
        serve(sock, parent);
    }
    close(sv[1]);
    *server_pid = pid;
    return sv[0];
}

// --- the supervisor's side ------------------------------------------------------------------------

pid_t cshim_spawn_via_server(int server, const cshim_spawn_request *req, int *failed_step, int *error, pid_t *failed_pid) {
    *failed_pid = 0;
    int argc = 0, envc = 0;
    while (req->argv[argc] != NULL) argc++;
    while (req->envp[envc] != NULL) envc++;
    size_t size = strlen(req->path) + 1 + (req->cwd ? strlen(req->cwd) + 1 : 0);
    for (int i = 0; i < argc; i++) size += strlen(req->argv[i]) + 1;
    for (int i = 0; i < envc; i++) size += strlen(req->envp[i]) + 1;
    size_t strings = size;
    size = (size + 3u) & ~(size_t)3u;
    size += (size_t)req->ngroups * sizeof(unsigned int) + (size_t)(req->cpu_mask_size > 0 ? req->cpu_mask_size : 0);
    int nfds = 3 + req->ncgroup_fds;
    if (size > MAX_PAYLOAD || argc > MAX_STRINGS || envc > MAX_STRINGS || nfds > MAX_FDS) {
        *failed_step = CSHIM_SPAWN_FAILED_EXEC;
        *error = E2BIG;
        return 0;
    }
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        *failed_step = CSHIM_SPAWN_FAILED_FORK;
        *error = ENOMEM;
        return 0;
    }
    char *c = buf;
#define PUT(s) do { size_t l = strlen(s) + 1; memcpy(c, (s), l); c += l; } while (0)
    PUT(req->path);
    if (req->cwd) PUT(req->cwd);
    for (int i = 0; i < argc; i++) PUT(req->argv[i]);
    for (int i = 0; i < envc; i++) PUT(req->envp[i]);
#undef PUT
    memset(c, 0, (size_t)(((strings + 3u) & ~(size_t)3u) - strings));
    c = buf + ((strings + 3u) & ~(size_t)3u);
    if (req->ngroups > 0) { memcpy(c, req->groups, (size_t)req->ngroups * sizeof(unsigned int)); c += (size_t)req->ngroups * sizeof(unsigned int); }
    if (req->cpu_mask_size > 0) memcpy(c, req->cpu_mask, (size_t)req->cpu_mask_size);

    wire_request h = {
        .magic = WIRE_MAGIC, .payload = (uint32_t)size, .nfds = nfds, .argc = argc, .envc = envc, .has_cwd = req->cwd != NULL,
        .set_ids = req->set_ids, .ngroups = req->ngroups, .set_nice = req->set_nice, .nice = req->nice, .umask = req->umask,
        .pdeathsig = req->pdeathsig, .cpu_mask_size = req->cpu_mask_size > 0 ? req->cpu_mask_size : 0,
        .uid = req->uid, .gid = req->gid, .nofile_soft = req->nofile_soft,
    };
    int fds[MAX_FDS] = {req->stdin_fd, req->stdout_fd, req->stderr_fd};
    for (int i = 0; i < req->ncgroup_fds; i++) fds[3 + i] = req->cgroup_fds[i];
    char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    memset(control, 0, sizeof(control));
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    ssize_t sent;
    do { sent = sendmsg(server, &msg, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    wire_reply reply;
    int broken = sent != (ssize_t)sizeof(h);
    int e = errno;
    // Short sends of the header are not expected on a stream socket of this size; treat as broken.
    if (!broken && size > 0) {
        const char *p = buf;
        size_t left = size;
        while (left > 0 && !broken) {
            ssize_t w = send(server, p, left, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { broken = 1; e = errno; break; }
            p += w;
            left -= (size_t)w;
        }
    }
    free(buf);
    if (!broken && read_all(server, &reply, sizeof(reply)) < 0) { broken = 1; e = errno ? errno : EPIPE; }
    if (broken) {
        *failed_step = CSHIM_SPAWN_FAILED_SERVER;
        *error = e ? e : EPIPE;
        return 0;
    }
    if (reply.step != CSHIM_SPAWN_OK) {
        *failed_pid = reply.pid;
        *failed_step = reply.step;
        *error = reply.error;
        return 0;
    }
    *failed_step = CSHIM_SPAWN_OK;
    *error = 0;
    return reply.pid;
}

pid_t cshim_spawn_server_fork(int server, int in_fd, int out_fd) {
    wire_request h;
    memset(&h, 0, sizeof(h));
    h.magic = WIRE_FORK_MAGIC;
    h.nfds = 2;
    int fds[2] = {in_fd, out_fd};
    char control[CMSG_SPACE(sizeof(int) * 2)];
    memset(control, 0, sizeof(control));
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * 2);
    memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    ssize_t sent;
    do { sent = sendmsg(server, &msg, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    if (sent != (ssize_t)sizeof(h)) return -(errno ? errno : EPIPE);
    wire_reply reply;
    if (read_all(server, &reply, sizeof(reply)) < 0) return -(errno ? errno : EPIPE);
    if (reply.step != CSHIM_SPAWN_OK) return -(reply.error ? reply.error : EPROTO);
    return reply.pid;
}

int cshim_spawn_server_fork_status(int server, int *status) {
    wire_reply done;
    if (read_all(server, &done, sizeof(done)) < 0) return -(errno ? errno : EPIPE);
    *status = done.step;
    return 0;
}

pid_t cshim_spawn_server_guardian(int server, int read_fd, const char *token) {
    wire_request h;
    memset(&h, 0, sizeof(h));
    h.magic = WIRE_GUARD_MAGIC;
    h.payload = CSHIM_GUARDIAN_TOKEN_LENGTH;
    h.nfds = 1;
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof(control));
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &read_fd, sizeof(int));
    ssize_t sent;
    do { sent = sendmsg(server, &msg, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    if (sent != (ssize_t)sizeof(h)) return -(errno ? errno : EPIPE);
    do { sent = send(server, token, CSHIM_GUARDIAN_TOKEN_LENGTH, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    if (sent != CSHIM_GUARDIAN_TOKEN_LENGTH) return -(errno ? errno : EPIPE);
    wire_reply reply;
    if (read_all(server, &reply, sizeof(reply)) < 0) return -(errno ? errno : EPIPE);
    if (reply.step != CSHIM_SPAWN_OK) return -(reply.error ? reply.error : EPROTO);
    return reply.pid;
}
