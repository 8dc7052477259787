// scripts/bench-journal.c: a mini supervisor that sends its workers' stdout+stderr to the journal in one
// of several ways, so scripts/bench-journal can compare them under a real systemd + journald.
//
//   cc -O2 -Wall -o bench-journal scripts/bench-journal.c -lsystemd
//   bench-journal [options] MODE
//
// Modes (how each worker's fd 1 and 2 reach the journal):
//   A   sd_journal_stream_fd(POOL, LOG_INFO, level_prefix=1) opened by the supervisor, passed to the worker
//       as fd 1 and 2, then closed in the supervisor: zero copies through the supervisor, no custom fields.
//   C   like A with the identifier "POOL/REPLICA".
//   D   like A, but the supervisor connects to /run/systemd/journal/stdout itself and names its own unit
//       (from /proc/self/cgroup) in the stream header's unit-id line, which sd_journal_stream_fd leaves empty.
//       journald accepts it from a root peer and uses it for _SYSTEMD_UNIT when it can no longer read the
//       writer's cgroup (the worker already exited): what PID 1 itself does for services' stdout.
//   B   a pipe per worker; the supervisor reads lines (epoll) and sends each with sd_journal_sendv():
//       MESSAGE, PRIORITY (from a "<N>" prefix if any, else 6), SYSLOG_IDENTIFIER=POOL, POOLVISOR_POOL,
//       POOLVISOR_REPLICA, POOLVISOR_WORKER_PID.
//   R   a pipe per worker; the supervisor relays "POOL.REPLICA | line" to its own stdout (poolvisor's
//       OutputRelay today: under systemd that stdout is the service's single journal stream).
//
// Options:
//   -k K      workers (replicas) (10)
//   -n N      lines in total, over all workers and generations (100000)
//   -s S      bytes per line including the newline (100)
//   -p POOL   pool name (kb)
//   -t TAG    run tag written in every line, to count them afterwards (run)
//   -r RATE   lines per second per worker; 0 = as fast as it can (0)
//   -g G      generations: each replica's worker is replaced G-1 times after it exits (1)
//   -x        A/C/D: keep each replica's stream open in the supervisor and hand the same one to the
//             replacement worker (default: a new stream per worker, the supervisor keeps no copy)
//   -e        each worker first writes "<3>..." to stderr (to see what level_prefix does with it)
//   -o FILE   also write the result line to FILE
//   -l        linger: after the result, wait for SIGTERM (a long-lived supervisor keeps its unit active while
//             journald catches up; journald reads the unit's settings from /run/systemd/units/ while it is)
//
// Every worker writes its lines with one write(2) per line (like a logger that flushes each record):
//   "POOL/REPLICA g=GEN seq=SEQ pid=PID tag=TAG xxxx...\n"
// The result line (stdout of the supervisor in A/C/D/B, stderr in R, and -o FILE) is
//   RESULT mode=.. k=.. n=.. wall_ms=.. cpu_ms=.. utime_ms=.. stime_ms=.. sent=..
// wall_ms: first fork until every worker exited and (pipe modes) every line was passed on;
// cpu_ms: the supervisor's own user+system CPU (getrusage RUSAGE_SELF: its children are not included);
// max_stall_ms (B, R): the longest the supervisor's event loop sat in one sd_journal_sendv() or write(1).
#define _GNU_SOURCE
#define SD_JOURNAL_SUPPRESS_LOCATION  // no CODE_FILE/LINE/FUNC: a Swift caller of sd_journal_sendv sends none
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

enum mode { MODE_A, MODE_C, MODE_D, MODE_B, MODE_R };

static enum mode mode;
static const char *mode_name;
static int K = 10, N = 100000, S = 100, RATE = 0, G = 1, keep_fd = 0, err_line = 0, linger = 0;
static const char *pool = "kb", *tag = "run", *out_file = NULL;

// One replica: its current worker, its pipe (B, R) or kept stream (A/C with -x), its partial line.
struct replica {
    int index, gen;
    pid_t pid;          // 0 when no worker is running
    int fd;             // pipe read end (B, R), else -1
    int stream;         // -x: the stream kept for the replica, else -1
    char *buf;          // partial line (B, R)
    size_t len;
    char fields[3][64]; // B: "POOLVISOR_REPLICA=..", "POOLVISOR_WORKER_PID=..", "SYSLOG_IDENTIFIER=.."
    char pool_field[64], relay_prefix[64];
};

static struct replica *reps;
static long sent;        // lines passed on by the supervisor (B, R)
static long send_errors; // B: sd_journal_sendv failures
static double max_stall; // B, R: longest single sd_journal_sendv / write to stdout, ms (the event loop is blocked)
static char *relay_out;  // R: output buffer
static size_t relay_len;
#define BUF_CAP (64 * 1024)

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench-journal: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) { p += w; n -= (size_t)w; }
        else if (w < 0 && errno == EINTR) continue;
        else return;  // EPIPE etc.: the line is lost, as it would be for a real worker
    }
}

static int open_stream(const char *identifier) {
    int fd = sd_journal_stream_fd(identifier, LOG_INFO, 1);
    if (fd < 0) die("sd_journal_stream_fd: %s", strerror(-fd));
    return fd;
}

// D: the stdout-stream protocol by hand (what sd_journal_stream_fd does), with the unit-id line filled in.
// Header lines: identifier, unit id, priority, level_prefix, forward to syslog, to kmsg, to console.
static char unit[256];  // D: the unit named in the header
static int open_stream_with_unit(const char *identifier) {
    if (!unit[0]) {  // the cgroup2 line "0::/system.slice/bench-journal.service" -> "bench-journal.service"
        FILE *f = fopen("/proc/self/cgroup", "re");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) != 0) continue;
            line[strcspn(line, "\n")] = 0;
            snprintf(unit, sizeof unit, "%s", strrchr(line, '/') + 1);
        }
        if (f) fclose(f);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/stdout"};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect %s: %s", sa.sun_path, strerror(errno));
    shutdown(fd, SHUT_RD);
    // An 8 MiB send buffer as sd_journal_stream_fd sets (SO_SNDBUF is capped at net.core.wmem_max; root may
    // force past it), so D differs from A only by the unit-id line.
    int sndbuf = 8 * 1024 * 1024;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    char header[512];
    int n = snprintf(header, sizeof header, "%s\n%s\n%d\n1\n0\n0\n0\n", identifier, unit, LOG_INFO);
    write_all(fd, header, (size_t)n);
    return fd;
}

// The worker: lines per worker, one write(2) each, optionally paced.
static void worker(struct replica *r, int lines) {
    char name[16];
    snprintf(name, sizeof name, "w-%s-%d", pool, r->index);
    prctl(PR_SET_NAME, name);  // so _COMM can tell the worker from the supervisor
    signal(SIGPIPE, SIG_DFL);
    char line[4096];
    int size = S < (int)sizeof line ? S : (int)sizeof line;
    if (err_line) {
        int n = snprintf(line, sizeof line, "<3>%s/%d g=%d pid=%d tag=%s level-prefix test on stderr\n",
                         pool, r->index, r->gen, getpid(), tag);
        write_all(2, line, (size_t)n);
    }
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (int seq = 0; seq < lines; seq++) {
        int n = snprintf(line, sizeof line, "%s/%d g=%d seq=%d pid=%d tag=%s ", pool, r->index, r->gen, seq,
                         getpid(), tag);
        while (n < size - 1) line[n++] = 'x';
        line[n++] = '\n';
        write_all(1, line, (size_t)n);
        if (RATE > 0) {
            next.tv_nsec += 1000000000L / RATE;
            while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
        }
    }
    _exit(0);
}

static void spawn(struct replica *r, int epfd, int lines) {
    int out = -1, pipefd[2] = {-1, -1};
    char ident[64];
    switch (mode) {
    case MODE_A: case MODE_C: case MODE_D:
        snprintf(ident, sizeof ident, mode == MODE_C ? "%s/%d" : "%s", pool, r->index);
        if (keep_fd) {
            if (r->stream < 0) r->stream = mode == MODE_D ? open_stream_with_unit(ident) : open_stream(ident);
            out = r->stream;
        } else {
            out = mode == MODE_D ? open_stream_with_unit(ident) : open_stream(ident);
        }
        break;
    case MODE_B: case MODE_R:
        if (pipe2(pipefd, O_CLOEXEC) < 0) die("pipe2: %s", strerror(errno));
        out = pipefd[1];
        break;
    }
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(out, 1) < 0 || dup2(out, 2) < 0) _exit(127);
        worker(r, lines);
    }
    r->pid = pid;
    if (mode == MODE_B || mode == MODE_R) {
        close(pipefd[1]);
        fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
        r->fd = pipefd[0];
        r->len = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, r->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
        snprintf(r->fields[1], sizeof r->fields[1], "POOLVISOR_WORKER_PID=%d", pid);
    } else if (out >= 0 && !keep_fd) {
        close(out);  // the worker holds the only copy: the stream ends when the worker exits
    }
}

static void relay_flush(void) {
    double t = now_ms();
    write_all(1, relay_out, relay_len);
    t = now_ms() - t;
    if (t > max_stall) max_stall = t;
    relay_len = 0;
}

// B and R: pass one complete line on (without its newline).
static void emit(struct replica *r, const char *p, size_t n) {
    if (n > 0 && p[n - 1] == '\r') n--;
    sent++;
    if (mode == MODE_R) {
        size_t pl = strlen(r->relay_prefix);
        if (relay_len + pl + n + 1 > BUF_CAP) relay_flush();
        memcpy(relay_out + relay_len, r->relay_prefix, pl);
        memcpy(relay_out + relay_len + pl, p, n);
        relay_len += pl + n;
        relay_out[relay_len++] = '\n';
        return;
    }
    // B: a "<N>" prefix sets PRIORITY, like level_prefix=1 does for a stream.
    char prio[] = "PRIORITY=6";
    if (n >= 3 && p[0] == '<' && p[1] >= '0' && p[1] <= '7' && p[2] == '>') {
        prio[9] = p[1];
        p += 3;
        n -= 3;
    }
    static char msg[BUF_CAP + 16];
    memcpy(msg, "MESSAGE=", 8);
    memcpy(msg + 8, p, n);
    struct iovec iov[6] = {
        {msg, 8 + n},
        {prio, sizeof prio - 1},
        {r->fields[2], strlen(r->fields[2])},
        {r->pool_field, strlen(r->pool_field)},
        {r->fields[0], strlen(r->fields[0])},
        {r->fields[1], strlen(r->fields[1])},
    };
    double t = now_ms();
    int rc = sd_journal_sendv(iov, 6);  // blocks while journald's socket queue is full
    t = now_ms() - t;
    if (t > max_stall) max_stall = t;
    if (rc < 0 && send_errors++ == 0) fprintf(stderr, "sd_journal_sendv: %s\n", strerror(-rc));
}

// B and R: read what the worker wrote, pass complete lines on; returns 0 at EOF.
static int pump(struct replica *r) {
    for (;;) {
        ssize_t got = read(r->fd, r->buf + r->len, BUF_CAP - r->len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && errno == EAGAIN) return 1;
        if (got <= 0) {  // EOF (or error): the last partial line goes out as a line
            if (r->len > 0) emit(r, r->buf, r->len);
            r->len = 0;
            return 0;
        }
        r->len += (size_t)got;
        char *start = r->buf, *end = r->buf + r->len, *nl;
        while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
            emit(r, start, (size_t)(nl - start));
            start = nl + 1;
        }
        r->len = (size_t)(end - start);
        if (r->len == BUF_CAP) {  // a line longer than the buffer: pass it on in pieces
            emit(r, r->buf, r->len);
            r->len = 0;
        } else if (start != r->buf) {
            memmove(r->buf, start, r->len);
        }
    }
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "k:n:s:p:t:r:g:xeo:l")) != -1) {
        switch (opt) {
        case 'k': K = atoi(optarg); break;
        case 'n': N = atoi(optarg); break;
        case 's': S = atoi(optarg); break;
        case 'p': pool = optarg; break;
        case 't': tag = optarg; break;
        case 'r': RATE = atoi(optarg); break;
        case 'g': G = atoi(optarg); break;
        case 'x': keep_fd = 1; break;
        case 'e': err_line = 1; break;
        case 'o': out_file = optarg; break;
        case 'l': linger = 1; break;
        default: die("bad option (see the comment at the top of scripts/bench-journal.c)");
        }
    }
    if (optind != argc - 1) die("usage: bench-journal [options] A|C|D|B|R");
    mode_name = argv[optind];
    if (!strcmp(mode_name, "A")) mode = MODE_A;
    else if (!strcmp(mode_name, "C")) mode = MODE_C;
    else if (!strcmp(mode_name, "D")) mode = MODE_D;
    else if (!strcmp(mode_name, "B")) mode = MODE_B;
    else if (!strcmp(mode_name, "R")) mode = MODE_R;
    else die("unknown mode %s", mode_name);
    if (K < 1 || G < 1 || N < K * G || S < 40) die("need K >= 1, G >= 1, N >= K*G, S >= 40");
    int lines = N / (K * G);

    // SIGCHLD through a signalfd in the same epoll set as the pipes.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev);
    relay_out = malloc(BUF_CAP);

    reps = calloc((size_t)K, sizeof *reps);
    for (int i = 0; i < K; i++) {
        struct replica *r = &reps[i];
        r->index = i;
        r->fd = r->stream = -1;
        r->buf = malloc(BUF_CAP);
        snprintf(r->pool_field, sizeof r->pool_field, "POOLVISOR_POOL=%s", pool);
        snprintf(r->fields[0], sizeof r->fields[0], "POOLVISOR_REPLICA=%d", i);
        snprintf(r->fields[2], sizeof r->fields[2], "SYSLOG_IDENTIFIER=%s", pool);
        snprintf(r->relay_prefix, sizeof r->relay_prefix, "%s.%d | ", pool, i);
    }

    double t0 = now_ms();
    for (int i = 0; i < K; i++) spawn(&reps[i], epfd, lines);

    // Run until every replica's last generation has exited and its pipe (if any) reached EOF.
    // A replica's next worker starts once the previous one exited and its pipe is drained.
    int done = 0;
    struct epoll_event evs[64];
    while (done < K) {
        int n = epoll_wait(epfd, evs, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait: %s", strerror(errno));
        for (int e = 0; e < n; e++) {
            struct replica *r = evs[e].data.ptr;
            if (r == NULL) {  // SIGCHLD: reap; in stream modes an exit ends the worker
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof si) == sizeof si) {}
                pid_t pid;
                int st;
                while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
                    for (int i = 0; i < K; i++) {
                        struct replica *q = &reps[i];
                        if (q->pid != pid) continue;
                        q->pid = 0;
                        if (q->fd >= 0) break;  // pipe modes: wait for EOF too
                        if (++q->gen < G) spawn(q, epfd, lines); else done++;
                        break;
                    }
                }
                continue;
            }
            if (!pump(r)) {
                epoll_ctl(epfd, EPOLL_CTL_DEL, r->fd, NULL);
                close(r->fd);
                r->fd = -1;
                if (r->pid > 0) {  // EOF before SIGCHLD: wait for that worker right here
                    int st;
                    waitpid(r->pid, &st, 0);
                    r->pid = 0;
                }
                if (++r->gen < G) spawn(r, epfd, lines); else done++;
            }
        }
        if (mode == MODE_R && relay_len > 0) relay_flush();
    }
    double wall = now_ms() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ut = ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3;
    double stt = ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
    char result[512];
    snprintf(result, sizeof result,
             "RESULT mode=%s k=%d n=%d g=%d rate=%d wall_ms=%.1f cpu_ms=%.1f utime_ms=%.1f stime_ms=%.1f sent=%ld "
             "send_errors=%ld max_stall_ms=%.1f supervisor_pid=%d unit=%s\n",
             mode_name, K, lines * K * G, G, RATE, wall, ut + stt, ut, stt, sent, send_errors, max_stall, getpid(), unit);
    // In R the supervisor's stdout carries the workers' lines: keep the result off it.
    fputs(result, mode == MODE_R ? stderr : stdout);
    if (out_file) {
        FILE *f = fopen(out_file, "w");
        if (f) { fputs(result, f); fclose(f); }
    }
    if (linger) {
        fflush(NULL);
        for (;;) pause();  // SIGTERM (systemctl stop) ends us
    }
    return 0;
}
