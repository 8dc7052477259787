#define _GNU_SOURCE
#include "cshim.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int cshim_wifexited(int status) { return WIFEXITED(status); }
int cshim_wexitstatus(int status) { return WEXITSTATUS(status); }
int cshim_wifsignaled(int status) { return WIFSIGNALED(status); }
int cshim_wtermsig(int status) { return WTERMSIG(status); }
int cshim_wcoredump(int status) { return WCOREDUMP(status); }

int cshim_prctl(int option, unsigned long arg2) { return prctl(option, arg2, 0, 0, 0); }
int cshim_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

int cshim_memfd_create(const char *name) {
    long fd = syscall(SYS_memfd_create, name, 1U /* MFD_CLOEXEC */);
    return fd < 0 ? -errno : (int)fd;
}

int cshim_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    return fd < 0 ? -errno : (int)fd;
#else
    (void)pid;
    return -ENOSYS;
#endif
}
int cshim_malloc_trim(void) { return malloc_trim(0); }

int cshim_malloc_fix_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }
int cshim_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

void cshim_supervisor_sigset(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR2);  // an in-place upgrade to the binary installed now
}

static int signals_blocked_at_start = 0;

// Runs before Swift's main and before any thread exists, so every later thread inherits the mask
// and the signals are only ever consumed through the supervisor's signalfd.
__attribute__((constructor)) static void cshim_block_supervisor_signals(void) {
    sigset_t set;
    cshim_supervisor_sigset(&set);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) == 0) signals_blocked_at_start = 1;
}

int cshim_signals_blocked_at_start(void) { return signals_blocked_at_start; }

static socklen_t fill_unix_address(struct sockaddr_un *addr, const char *path) {
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(addr->sun_path)) return 0;
    memcpy(addr->sun_path, path, n);
    if (path[0] == '@') addr->sun_path[0] = '\0';  // abstract namespace
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
}

int cshim_send_datagram(int fd, const char *path, const void *text, size_t len, int dontwait) {
    struct sockaddr_un addr;
    socklen_t alen = fill_unix_address(&addr, path);
    if (alen == 0) return -ENAMETOOLONG;
    ssize_t n = sendto(fd, text, len, MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0), (struct sockaddr *)&addr, alen);
    return n < 0 ? -errno : 0;
}

int cshim_bind_datagram(const char *path) {
    struct sockaddr_un addr;
    socklen_t alen = fill_unix_address(&addr, path);
    if (alen == 0) return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&addr, alen) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

ssize_t cshim_recv_with_pid(int fd, void *buf, size_t len, pid_t *sender) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof(control.space);
    *sender = 0;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof(cred));
            *sender = cred.pid;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            // A sender passed file descriptors: close them, we never keep them.
            int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int fds[count > 0 ? count : 1];
            memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)count);
            for (int i = 0; i < count; i++) close(fds[i]);
        }
    }
    if (msg.msg_flags & MSG_TRUNC) return -EMSGSIZE;
    return n;
}

// ---- The control socket (AF_UNIX stream) ----

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

// Like fill_unix_address, but never abstract: a control socket is a file with an owner and a mode.
static socklen_t fill_path_address(struct sockaddr_un *addr, const char *path) {
    if (path[0] == '@') return 0;
    return fill_unix_address(addr, path);
}

int cshim_stream_bind(const char *path) {
    struct sockaddr_un addr;
    socklen_t alen = fill_path_address(&addr, path);
    if (alen == 0) return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&addr, alen) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cshim_stream_connect(const char *path, int timeout_ms) {
    struct sockaddr_un addr;
    socklen_t alen = fill_path_address(&addr, path);
    if (alen == 0) return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (timeout_ms == 0 ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -errno;
    if (timeout_ms > 0) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (connect(fd, (struct sockaddr *)&addr, alen) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int cshim_journal_stream(const char *path, const char *header, size_t header_len) {
    int fd = cshim_stream_connect(path, 0);
    if (fd < 0) return fd;
    shutdown(fd, SHUT_RD);
    // As systemd does for a service's own stdout: a big buffer so that a burst of output does not
    // block the worker while journald catches up. SO_SNDBUFFORCE passes net.core.wmem_max as root.
    int size = 8 * 1024 * 1024;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    // A fresh connection with an empty 8 MiB buffer takes the header in one write.
    ssize_t n = write(fd, header, header_len);
    if (n != (ssize_t)header_len) {
        int e = n < 0 ? errno : EIO;
        close(fd);
        return -e;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

long cshim_getxattr(const char *path, const char *name, void *value, size_t size) {
    ssize_t n = getxattr(path, name, value, size);
    return n < 0 ? -errno : (long)n;
}

int cshim_accept(int fd) {
    int conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return conn < 0 ? -errno : conn;
}

int cshim_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int cshim_peer_groups(int fd, gid_t *groups, int capacity) {
    socklen_t len = (socklen_t)(capacity > 0 ? capacity : 0) * sizeof(gid_t);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        // ERANGE: the buffer is too small and `len` says how much is needed.
        return errno == ERANGE ? (int)(len / sizeof(gid_t)) : -errno;
    }
    return (int)(len / sizeof(gid_t));
}

// Signals whose disposition is not SIG_DFL in the supervisor (ignored or handled). execve resets
// handled ones by itself, but an ignored one would stay ignored in the worker, and a handled one
// must not run in the vfork child, which shares the supervisor's memory.
static sigset_t non_default_signals;

void cshim_spawn_prepare(void) {
    sigemptyset(&non_default_signals);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL) sigaddset(&non_default_signals, sig);
    }
}

// The child's side of a spawn, in a vfork (or clone(CLONE_VM|CLONE_VFORK)) child: only
// async-signal-safe calls from here to execve. Reports a failed step and its errno through the
// memory it shares with the parent, then _exits.
void cshim_spawn_child(const cshim_spawn_request *req, pid_t parent, volatile int *child_step, volatile int *child_errno) {
    // Child: only async-signal-safe calls from here to execve.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(&non_default_signals, sig) == 1) sigaction(sig, &dfl, NULL);
    }
    if (setpgid(0, 0) < 0) { *child_step = CSHIM_SPAWN_FAILED_SETPGID; goto fail; }
    // Into the worker's own cgroups first, so nothing runs outside its limits (and while still
    // root: cgroup.procs is the supervisor's to write).
    for (int i = 0; i < req->ncgroup_fds; i++) {
        if (write(req->cgroup_fds[i], "0", 1) != 1) { *child_step = CSHIM_SPAWN_FAILED_CGROUP; goto fail; }
    }
    // While still the supervisor's user: a negative nice value needs CAP_SYS_NICE.
    if (req->set_nice && setpriority(PRIO_PROCESS, 0, req->nice) < 0) { *child_step = CSHIM_SPAWN_FAILED_NICE; goto fail; }
    if (req->cpu_mask != NULL &&
        syscall(SYS_sched_setaffinity, 0, (size_t)req->cpu_mask_size, req->cpu_mask) < 0) {
        *child_step = CSHIM_SPAWN_FAILED_AFFINITY; goto fail;
    }
    // Raw system calls, not glibc's setuid() and friends: those broadcast the change to every thread
    // of the process (setxid), and the vfork child shares the supervisor's memory, thread list
    // included. The kernel calls change this task only, which is all the child is.
    if (req->set_ids) {
        if (syscall(SYS_setgroups, (size_t)req->ngroups, req->groups) < 0) { *child_step = CSHIM_SPAWN_FAILED_SETGROUPS; goto fail; }
        if (syscall(SYS_setresgid, req->gid, req->gid, req->gid) < 0) { *child_step = CSHIM_SPAWN_FAILED_SETGID; goto fail; }
        if (syscall(SYS_setresuid, req->uid, req->uid, req->uid) < 0) { *child_step = CSHIM_SPAWN_FAILED_SETUID; goto fail; }
    }
    // After the credentials: changing them clears the parent-death signal.
    if (req->pdeathsig != 0) {
        if (prctl(PR_SET_PDEATHSIG, (unsigned long)req->pdeathsig, 0, 0, 0) < 0) {
            *child_step = CSHIM_SPAWN_FAILED_PDEATHSIG; goto fail;
        }
        // The supervisor may have died between vfork and prctl: then nobody would kill us.
        if (getppid() != parent) { *child_step = CSHIM_SPAWN_FAILED_PARENT_GONE; errno = ESRCH; goto fail; }
    }
    if (req->nofile_soft >= 0) {
        struct rlimit lim;
        if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && (rlim_t)req->nofile_soft < lim.rlim_cur) {
            lim.rlim_cur = (rlim_t)req->nofile_soft;
            if (setrlimit(RLIMIT_NOFILE, &lim) < 0) { *child_step = CSHIM_SPAWN_FAILED_RLIMIT; goto fail; }
        }
    }
    if (req->umask >= 0) umask((mode_t)req->umask);
    if (req->cwd != NULL && chdir(req->cwd) < 0) { *child_step = CSHIM_SPAWN_FAILED_CHDIR; goto fail; }
    if (dup2(req->stdin_fd, 0) < 0 || dup2(req->stdout_fd, 1) < 0 || dup2(req->stderr_fd, 2) < 0) {
        *child_step = CSHIM_SPAWN_FAILED_DUP2; goto fail;
    }
    // Nothing but stdio crosses into the worker, even an fd some library forgot to mark CLOEXEC.
    // (The vfork child has its own copy of the fd table.)
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execve(req->path, req->argv, req->envp);
    *child_step = CSHIM_SPAWN_FAILED_EXEC;
fail:
    *child_errno = errno;
    _exit(127);
}

pid_t cshim_spawn(const cshim_spawn_request *req, int *failed_step, int *error) {
    // Shared with the vfork child, which writes its failure here before _exit.
    volatile int child_step = CSHIM_SPAWN_OK;
    volatile int child_errno = 0;
    pid_t parent = getpid();

    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);

    pid_t pid = vfork();
    if (pid == 0) cshim_spawn_child(req, parent, &child_step, &child_errno);

    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (pid < 0) {
        *failed_step = CSHIM_SPAWN_FAILED_FORK;
        *error = fork_errno;
        return 0;
    }
    if (child_step != CSHIM_SPAWN_OK) {
        // The child already _exit'ed; reap it here so the supervisor's reaper never sees it.
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *failed_step = child_step;
        *error = child_errno;
        return 0;
    }
    *failed_step = CSHIM_SPAWN_OK;
    *error = 0;
    return pid;
}
