// CShim: the Linux syscalls and GNU-only symbols that Swift's Glibc module does not export,
// plus the worker spawner. Everything here is small and async-signal-safe where it runs in a child.
#ifndef POOLVISOR_CSHIM_H
#define POOLVISOR_CSHIM_H

#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>
#include <stdint.h>

// Wait-status macros (function-like macros do not import).
int cshim_wifexited(int status);
int cshim_wexitstatus(int status);
int cshim_wifsignaled(int status);
int cshim_wtermsig(int status);
int cshim_wcoredump(int status);

// Variadic or GNU-only calls.
int cshim_prctl(int option, unsigned long arg2);
int cshim_pipe2(int fds[2], int flags);
/// memfd_create(name, MFD_CLOEXEC): an anonymous file in memory. fd or -errno.
int cshim_memfd_create(const char *name);
/// pidfd_open(pid, 0) (Linux 5.3): an fd that becomes readable when the process exits. fd or -errno.
int cshim_pidfd_open(pid_t pid);
int cshim_set_child_subreaper(void);
/// malloc_trim(0): returns freed heap memory to the kernel.
int cshim_malloc_trim(void);
/// mallopt(M_MMAP_THRESHOLD, bytes): allocations of at least `bytes` get their own mapping, returned
/// to the kernel when freed. Setting it turns off glibc's dynamic threshold, which otherwise rises to
/// the size of the largest block freed (a status answer of megabytes), after which such blocks come
/// from the heap and stay in it.
int cshim_malloc_fix_mmap_threshold(int bytes);
/// Blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP in the calling thread and fills `set` with them.
/// The library constructor already did this for the main thread before any other thread existed.
void cshim_supervisor_sigset(sigset_t *set);
/// 1 if the constructor ran and blocked the supervisor's signals before main.
int cshim_signals_blocked_at_start(void);

/// Sends `text` as one datagram to the AF_UNIX socket at `path` ("@name" = abstract), without waiting
/// for room in the receiver's queue when `dontwait` is set (-EAGAIN then). Returns 0 or -errno.
int cshim_send_datagram(int fd, const char *path, const void *text, size_t len, int dontwait);
/// Binds an AF_UNIX datagram socket at `path` with SO_PASSCRED; returns the fd or -errno.
int cshim_bind_datagram(const char *path);
/// Receives one datagram; on success returns its length and stores the sender pid (0 when unknown).
ssize_t cshim_recv_with_pid(int fd, void *buf, size_t len, pid_t *sender);

// The control socket (AF_UNIX stream). Paths are file-system paths; "@" has no special meaning here.
/// A non-blocking, close-on-exec stream socket bound to `path`, not yet listening. fd or -errno.
int cshim_stream_bind(const char *path);
/// A close-on-exec stream socket connected to `path`; fd or -errno. timeout_ms == 0: a non-blocking
/// probe (-EAGAIN if the listener's backlog is full). timeout_ms > 0: a blocking connect that waits at
/// most that long for room in a full backlog (SO_SNDTIMEO bounds AF_UNIX connect), then -EAGAIN.
int cshim_stream_connect(const char *path, int timeout_ms);
/// A stream into journald for one worker's stdout and stderr: connects to `path`
/// (/run/systemd/journal/stdout) without waiting (-EAGAIN when journald's backlog is full), makes the
/// socket write-only with an 8 MiB send buffer, writes the stream `header` and returns the fd, blocking
/// and close-on-exec, or -errno.
int cshim_journal_stream(const char *path, const char *header, size_t header_len);
/// getxattr(2), which Swift's Glibc module does not export: the value's length, or -errno.
long cshim_getxattr(const char *path, const char *name, void *value, size_t size);
/// accept4(SOCK_NONBLOCK | SOCK_CLOEXEC), which is GNU-only. fd or -errno.
int cshim_accept(int fd);
/// SO_PEERCRED: the peer's pid, effective uid and gid when it connected. 0 or -errno.
int cshim_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);
/// SO_PEERGROUPS (Linux 4.13): the peer's supplementary groups when it connected. Returns their count,
/// which may exceed `capacity` (then call again with room for that many), or -errno (-ENOPROTOOPT on
/// older kernels).
int cshim_peer_groups(int fd, gid_t *groups, int capacity);

/// Describes one worker to spawn. Every fd and string is owned by the caller.
typedef struct {
    const char *path;          // executable, already resolved
    char *const *argv;         // NULL-terminated
    char *const *envp;         // NULL-terminated, complete environment
    const char *cwd;           // NULL: inherit
    int stdin_fd;              // dup2'ed onto 0, 1 and 2 in the child
    int stdout_fd;
    int stderr_fd;
    int pdeathsig;             // 0: none; otherwise the signal the child gets when the supervisor dies
    long long nofile_soft;     // < 0: inherit; otherwise the child's soft RLIMIT_NOFILE (the supervisor
                               // raises its own for thousands of workers; workers get the usual one back)
    int set_ids;               // 1: become uid/gid with these supplementary groups (before exec)
    unsigned int uid;
    unsigned int gid;
    const unsigned int *groups;
    int ngroups;
    int set_nice;              // 1: setpriority(nice)
    int nice;
    int umask;                 // < 0: inherit
    const unsigned char *cpu_mask;  // NULL: inherit; else a cpu_set_t-style bit mask of cpu_mask_size bytes
    int cpu_mask_size;
    const int *cgroup_fds;     // open cgroup.procs files the child joins (writes "0" to) before anything else
    int ncgroup_fds;
} cshim_spawn_request;

/// Which step failed in the child (reported with its errno).
enum {
    CSHIM_SPAWN_OK = 0,
    CSHIM_SPAWN_FAILED_FORK = 1,
    CSHIM_SPAWN_FAILED_SETPGID = 2,
    CSHIM_SPAWN_FAILED_PDEATHSIG = 3,
    CSHIM_SPAWN_FAILED_PARENT_GONE = 4,
    CSHIM_SPAWN_FAILED_CHDIR = 5,
    CSHIM_SPAWN_FAILED_DUP2 = 6,
    CSHIM_SPAWN_FAILED_EXEC = 7,
    CSHIM_SPAWN_FAILED_RLIMIT = 8,
    CSHIM_SPAWN_FAILED_SETGROUPS = 9,
    CSHIM_SPAWN_FAILED_SETGID = 10,
    CSHIM_SPAWN_FAILED_SETUID = 11,
    CSHIM_SPAWN_FAILED_NICE = 12,
    CSHIM_SPAWN_FAILED_AFFINITY = 13,
    CSHIM_SPAWN_FAILED_CGROUP = 14,
    CSHIM_SPAWN_FAILED_SERVER = 15,
};

/// Records which signals the supervisor ignores or handles, so that a child resets exactly those.
/// Call once from main, after the process has set its own dispositions.
void cshim_spawn_prepare(void);

/// vfork + exec: the child gets its own process group, nice value and CPU affinity, its user, group
/// and supplementary groups, PDEATHSIG (after the credentials change, which clears it), its umask,
/// default signal dispositions, an empty mask, the working directory and stdio, then execs. Returns the pid (> 0), or 0 with
/// *failed_step and *error set. Call only from the supervisor's long-lived loop thread.
pid_t cshim_spawn(const cshim_spawn_request *req, int *failed_step, int *error);

/// The child's side of `cshim_spawn` (and of the spawn server's): sets the worker up and execs it, or
/// reports the failed step and errno in `child_step`/`child_errno` and _exits. Never returns.
void cshim_spawn_child(const cshim_spawn_request *req, pid_t parent, volatile int *child_step, volatile int *child_errno)
    __attribute__((noreturn));

/// Starts the spawn server: a process forked from the caller (call it from the loop thread, before
/// any other thread exists, after the signal dispositions are set) that keeps an fd table of its own
/// with almost nothing in it, and spawns workers with clone(CLONE_PARENT): they are the caller's
/// children, but their exec no longer closes every fd the caller holds (10,000 worker pipes made each
/// spawn cost milliseconds). Dies with the caller (PDEATHSIG) or when its socket closes. Returns the
/// caller's end of the socket (close-on-exec) and the server's pid in *server_pid, or -errno.
int cshim_spawn_server_start(pid_t *server_pid);
/// `cshim_spawn` through the spawn server. Returns the pid, or 0 with *failed_step and *error set.
/// A child that failed after it was created is the caller's to reap: its pid is in *failed_pid.
/// *failed_step == CSHIM_SPAWN_FAILED_SERVER: the server is gone (error says why); spawn in-process.
pid_t cshim_spawn_via_server(int server, const cshim_spawn_request *req, int *failed_step, int *error, pid_t *failed_pid);

/// What a fork of the spawn server runs (`poolvisor parse-toml`'s body): it reads stdin, writes
/// stdout and returns the exit status. Set it before `cshim_spawn_server_start`: the server keeps the
/// value it was forked with.
void cshim_spawn_server_set_fork_entry(int (*entry)(void));
/// Runs the fork entry in a fork of the spawn server (a copy of the supervisor as it was when the
/// server started, with one thread and no exec to pay for), `in_fd` as its stdin and `out_fd` as its
/// stdout. Returns its pid, or -errno (-ENOSYS without an entry; -EPIPE or the like when the server
/// is gone). The child is the server's: always follow with `cshim_spawn_server_fork_status`, which
/// blocks until the child has exited (kill it first to cut it short) and gives its wait status.
pid_t cshim_spawn_server_fork(int server, int in_fd, int out_fd);
int cshim_spawn_server_fork_status(int server, int *status);

// The guardian (guardian.c): kills what a supervisor's workers leave when the supervisor dies
// without a word (SIGKILL, a crash, the OOM killer), with or without systemd and cgroups.

/// The environment variable every spawned process carries, with a token unique to the run.
#define CSHIM_GUARDIAN_VARIABLE "POOLVISOR_RUN"
/// The guardian's process name (PR_SET_NAME, /proc/PID/comm: at most 15 bytes).
#define CSHIM_GUARDIAN_NAME "poolvisor-guard"
/// The token's length: 128 bits in hex.
#define CSHIM_GUARDIAN_TOKEN_LENGTH 32
/// The record that says the supervisor is stopping normally (pids are records > 1, a reaped one < 0).
#define CSHIM_GUARDIAN_STOPPING 1

/// Starts the guardian: through the spawn server when `server` >= 0 (a fork of the server, which is
/// small, made the caller's child with CLONE_PARENT), else as a fork of the caller. It runs in a
/// session of its own, ignores every signal but SIGKILL and SIGSTOP, and blocks reading a pipe whose
/// write end is returned in *write_fd (non-blocking, close-on-exec, and held by nothing else). It
/// reads records (`cshim_guardian_send`): a process group started (> 1), one reaped (< 0), a normal
/// stop (CSHIM_GUARDIAN_STOPPING). When the pipe ends (the last holder of the write end closed it or
/// died), it SIGKILLs every process group still listed and every process whose environment holds
/// POOLVISOR_RUN=`token`, again until a pass finds none (at most about 900 ms), and exits with how
/// many it killed (at most 255); after a death (no stop record) it writes a line on stderr when it
/// killed any. Keeping the write end open across an execve (clear FD_CLOEXEC on it) keeps it asleep.
/// Returns 0 with *guardian_pid set, or -errno.
int cshim_guardian_start(int server, const char *token, int *write_fd, pid_t *guardian_pid);
/// At most this many records go in one write, which is then atomic (PIPE_BUF bytes).
#define CSHIM_GUARDIAN_RECORDS_AT_ONCE 1024
/// Writes `count` records (1 to CSHIM_GUARDIAN_RECORDS_AT_ONCE) at once, or none (never blocks).
/// 0, or -errno (-EAGAIN: the guardian has not kept up).
int cshim_guardian_send(int write_fd, const int32_t *records, int count);
/// The spawn server's side: clones the guardian with `in` as its pipe. pid or -errno.
pid_t cshim_guardian_clone(int in, const char *token, pid_t supervisor);
/// Asks the spawn server to start the guardian with this read end. pid or -errno.
pid_t cshim_spawn_server_guardian(int server, int read_fd, const char *token);

#endif
