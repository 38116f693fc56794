/*
 * dockyard-monitor: the one process dockyard keeps per running container.
 *
 * It starts the container with the OCI runtime (runc), holds the container's
 * stdio, writes Docker json-file logs (with rotation), serves attach clients
 * on a unix socket, runs healthchecks, applies the restart policy and records
 * the outcome in a small state file.  It is C with nothing but libc so that an
 * idle container costs a few hundred KB; the Python side and the contract
 * are in src/dockyard/runtime/monitor.py.
 *
 * Design: one thread, one poll() loop.  SIGCHLD/SIGTERM arrive on a signalfd;
 * timers (health probes, restart back-off, client stalls) are poll timeouts.
 * Short runtime commands (run/create/start/delete) run synchronously; health
 * probes (`runc exec`) run asynchronously so output copying never stops.
 * Every fd we open is O_CLOEXEC so nothing leaks into the container.
 *
 * Build: cc -O2 -Wall -o dockyard-monitor monitor.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* ---- limits and protocol constants ---------------------------------------- */

#define LOG_LINE_MAX (16 * 1024)   /* Docker splits longer lines into partials */
#define MAX_CLIENTS 32             /* attach clients at once */
#define CLIENT_HIGH (1 << 20)      /* backlog above which container output pauses */
#define CLIENT_STALL_MS 30000      /* a paused client that accepts nothing is dropped */
#define MAX_FRAME (1 << 20)        /* largest frame a client may send */
#define PROBE_OUT_MAX 4096         /* healthcheck output kept, like Docker */
#define HEALTH_LOG_KEEP 5          /* probe results kept in health.json */
#define FLUSH_MS 10000             /* final flush to clients, at most */
#define RESTART_MAX_DELAY_MS 60000 /* Docker's restart back-off ceiling */

enum frame_type {
	F_STDIN = 0, F_STDOUT = 1, F_STDERR = 2, F_RESIZE = 3,
	F_CLOSE_STDIN = 4, F_EXIT = 5, F_START = 6, F_ERROR = 7,
};

enum restart_policy { R_NO, R_ALWAYS, R_UNLESS_STOPPED, R_ON_FAILURE };

enum phase {
	P_WAIT_START,   /* --wait-attach: waiting for a START frame */
	P_RUNNING,      /* container running */
	P_RESTART_WAIT, /* exited, waiting out the restart back-off */
	P_FINISHING,    /* final state written; flushing clients before exit */
};

/* ---- options and state ------------------------------------------------------ */

static struct {
	const char *id, *runtime, *runtime_root, *bundle, *state_dir, *log_path;
	long long log_max_size;
	int log_max_file;
	int tty, open_stdin, wait_attach, sync_fd;
	int restart, restart_max;
	char **health_argv, **exit_argv;
	int health_argc, exit_argc;
	long long health_interval, health_timeout, health_start_period; /* ns */
	int health_retries;
} opt = { .log_max_file = 1, .sync_fd = -1 };

static enum phase phase = P_WAIT_START;
static int state_dirfd = -1, diag_fd = -1, listen_fd = -1, sig_fd = -1;
static char *pid_path, *probe_pid_path, *runc_log_path, *console_path;

static pid_t ctr_pid = -1;
static int64_t started_at, finished_at; /* realtime ns */
static long long started_ms;            /* monotonic ms */
static int exit_code = -1, restart_count, oom_killed;
static const char *status = "created";
static char error_msg[1024];
static char *oom_file; /* memory.oom_control (v1) or memory.events (v2) */

/* Container output: stdout/stderr pipes, or the pty master as "stdout". */
struct stream {
	int fd, type;
	unsigned char *buf; /* pending partial log line, allocated on demand */
	size_t len;
};
static struct stream streams[2] = { { -1, F_STDOUT, NULL, 0 }, { -1, F_STDERR, NULL, 0 } };
static int stdin_fd = -1; /* pipe write end, or the pty master */
static int pty_fd = -1;
static unsigned char *stdin_pend; /* bytes the container has not taken yet */
static size_t stdin_pend_len, stdin_pend_off;
static int stdin_close_after; /* CLOSE_STDIN arrived while bytes were pending */
static int win_rows, win_cols;

static int log_fd = -1;
static long long log_size;

struct client {
	int fd, dead;
	unsigned char hdr[8];
	size_t hdr_got;
	unsigned char *payload;
	uint32_t plen, pgot;
	unsigned char *out; /* queued frames not yet accepted by the socket */
	size_t out_off, out_len, out_cap;
	long long progress_ms; /* last time the client accepted bytes */
};
static struct client clients[MAX_CLIENTS];
static int nclients;
static int start_requested, final_rc, run_exit_cmd;
static long long restart_delay_ms, restart_at_ms, finish_deadline_ms;

/* Healthcheck */
struct probe_rec {
	int64_t start, end;
	int exit_code;
	char *out;
	size_t out_len;
};
static struct probe_rec hlog[HEALTH_LOG_KEEP];
static int hlog_n, failing_streak;
static const char *health_status = "starting";
static pid_t probe_pid = -1;
static int probe_fd = -1;
static char *probe_buf;
static size_t probe_len;
static int64_t probe_start_ns;
static long long probe_deadline_ms, next_probe_ms;

/* ---- small helpers ---------------------------------------------------------- */

static int64_t now_real(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long ns_to_ms(long long ns) { return ns <= 0 ? 0 : (ns + 999999) / 1000000; }

static int exit_status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

/* Drop trailing '0's of a decimal fraction ending at b[k-1]; returns the new length. */
static int trim_zeros(char *b, int k) {
	while (b[k - 1] == '0')
		b[--k] = '\0';
	return k;
}

/* RFC3339Nano in UTC as Go prints it: fraction without trailing zeros. */
static void fmt_time(char *buf, size_t n, int64_t ns) {
	buf[0] = '\0';
	if (ns <= 0 || n < 32)
		return;
	time_t s = (time_t)(ns / 1000000000LL);
	struct tm tm;
	gmtime_r(&s, &tm);
	int k = (int)strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
	if (ns % 1000000000LL)
		k = trim_zeros(buf, k + snprintf(buf + k, n - (size_t)k, ".%09lld", (long long)(ns % 1000000000LL)));
	snprintf(buf + k, n - (size_t)k, "Z");
}

/* Go's time.Duration.String(), for "Health check exceeded timeout (30s)". */
static void go_duration(char *b, size_t n, long long ns) {
	int k = 0;
	if (ns < 1000) {
		snprintf(b, n, "%lld%s", ns, ns ? "ns" : "s");
	} else if (ns < 1000000000LL) { /* "1.5ms", "250\u00b5s" */
		long long unit = ns < 1000000 ? 1000 : 1000000;
		k = snprintf(b, n, "%lld", ns / unit);
		if (ns % unit)
			k = trim_zeros(b, k + snprintf(b + k, n - (size_t)k, ".%0*lld", unit == 1000 ? 3 : 6, ns % unit));
		snprintf(b + k, n - (size_t)k, unit == 1000 ? "\xc2\xb5s" : "ms");
	} else { /* "1h2m3.5s" */
		long long s = ns / 1000000000LL;
		if (s >= 3600)
			k = snprintf(b, n, "%lldh%lldm", s / 3600, (s / 60) % 60);
		else if (s >= 60)
			k = snprintf(b, n, "%lldm", s / 60);
		k += snprintf(b + k, n - (size_t)k, "%lld", s % 60);
		if (ns % 1000000000LL)
			k = trim_zeros(b, k + snprintf(b + k, n - (size_t)k, ".%09lld", ns % 1000000000LL));
		snprintf(b + k, n - (size_t)k, "s");
	}
}

/* Our own diagnostics go to state-dir/monitor.log (stdio is /dev/null). */
static void diag(const char *fmt, ...) {
	if (diag_fd < 0)
		return;
	char buf[1024], ts[48];
	fmt_time(ts, sizeof ts, now_real());
	int k = snprintf(buf, sizeof buf, "%s [%d] ", ts, (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	k += vsnprintf(buf + k, sizeof buf - (size_t)k, fmt, ap);
	va_end(ap);
	if (k >= (int)sizeof buf)
		k = sizeof buf - 1;
	buf[k++] = '\n';
	if (write(diag_fd, buf, (size_t)k) < 0) { /* nowhere else to report */ }
}

static int write_all(int fd, const void *p, size_t n) {
	for (const char *s = p; n > 0;) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static void set_nonblock(int fd) {
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_fd(int *fd) {
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static char *xprintf(const char *fmt, ...) {
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s) {
		diag("out of memory");
		_exit(1);
	}
	return s;
}

/* Read at most n-1 bytes from fd, NUL-terminated; returns the length. */
static size_t read_fd(int fd, char *buf, size_t n) {
	size_t got = 0;
	while (got + 1 < n) {
		ssize_t r = read(fd, buf + got, n - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	return got;
}

/* A small file (relative to the state dir if dirfd >= 0) into buf; -1 if unreadable. */
static ssize_t read_small(int dirfd, const char *path, char *buf, size_t n) {
	int fd = openat(dirfd >= 0 ? dirfd : AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = read_fd(fd, buf, n);
	close(fd);
	return (ssize_t)got;
}

/*
 * Default dispositions for every signal, so nothing our caller ignored
 * reaches the container -- including glibc's internal signals 32/33, which
 * posix_spawn() leaves ignored and sigaction() refuses to touch (hence the
 * raw system call with the kernel's struct sigaction).
 */
static void default_all_signals(void) {
	struct { void (*handler)(int); unsigned long flags; void (*restorer)(void); unsigned long mask; }
		ksa = { SIG_DFL, 0, NULL, 0 };
	for (int sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			syscall(SYS_rt_sigaction, sig, &ksa, NULL, sizeof ksa.mask);
}

/* Children and the exit command start with default signal handling. */
static void reset_signals(void) {
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
}

/* ---- buffered writer and JSON escaping ------------------------------------------ */

struct wbuf {
	int fd, err;
	size_t len;
	long long total;
	char b[8192];
};

static void wb_flush(struct wbuf *w) {
	if (w->len && !w->err && write_all(w->fd, w->b, w->len) < 0)
		w->err = errno;
	w->total += (long long)w->len;
	w->len = 0;
}

static void wb_put(struct wbuf *w, const void *p, size_t n) {
	for (const char *s = p; n > 0;) {
		if (w->len == sizeof w->b)
			wb_flush(w);
		size_t k = sizeof w->b - w->len;
		k = n < k ? n : k;
		memcpy(w->b + w->len, s, k);
		w->len += k;
		s += k;
		n -= k;
	}
}

static void wb_str(struct wbuf *w, const char *s) { wb_put(w, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at s (Go's rules), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t need;
	if (c >= 0xC2 && c <= 0xDF)
		need = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0; /* no overlong forms */
		else if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F; /* nothing above U+10FFFF */
	} else
		return 0;
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return need;
}

/*
 * A JSON string body escaped the way Docker's json-file driver does it:
 * \" \\ \n \r, other control bytes and <>& as \u00XX, invalid UTF-8 bytes
 * as \ufffd, and U+2028/U+2029 escaped.
 */
static void wb_json(struct wbuf *w, const unsigned char *s, size_t n) {
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, start = 0, k;
	while (i < n) {
		unsigned char c = s[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
			i++; /* the common case: copied as is */
			continue;
		}
		char u[7] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0 };
		const char *esc = NULL;
		k = 1;
		if (c < 0x80)
			esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : u;
		else if ((k = utf8_len(s + i, n - i)) == 0)
			esc = "\\ufffd", k = 1;
		else if (k == 3 && c == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] & 0xFE) == 0xA8)
			esc = s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
		if (esc) {
			wb_put(w, s + start, i - start);
			wb_str(w, esc);
			start = i + k;
		}
		i += k;
	}
	wb_put(w, s + start, n - start);
}

/* ---- state files ---------------------------------------------------------------- */

/* Files in the state dir are replaced atomically: NAME.tmp, then rename. */
static int atomic_open(const char *tmp) {
	return openat(state_dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static void atomic_commit(int fd, const char *tmp, const char *name, int failed) {
	if (close(fd) < 0 || failed) {
		diag("cannot write %s", name);
		unlinkat(state_dirfd, tmp, 0);
	} else if (renameat(state_dirfd, tmp, state_dirfd, name) < 0)
		diag("rename %s: %s", name, strerror(errno));
}

static void write_small_file(const char *name, const char *data, size_t len) {
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%s.tmp", name);
	int fd = atomic_open(tmp);
	if (fd < 0)
		diag("%s: %s", tmp, strerror(errno));
	else
		atomic_commit(fd, tmp, name, write_all(fd, data, len) < 0);
}

static void write_state(void) {
	char st[48], fin[48], buf[2048];
	fmt_time(st, sizeof st, started_at);
	fmt_time(fin, sizeof fin, finished_at);
	int n = snprintf(buf, sizeof buf,
			 "status=%s\npid=%d\nstarted_at=%s\nfinished_at=%s\nexit_code=%d\n"
			 "restart_count=%d\noom_killed=%d\nerror=%s\nmonitor_pid=%d\n",
			 status, ctr_pid > 0 ? (int)ctr_pid : 0, st, fin, exit_code, restart_count,
			 oom_killed, error_msg, (int)getpid());
	write_small_file("state", buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void write_health(void) {
	struct wbuf w = { .fd = atomic_open("health.json.tmp") };
	if (w.fd < 0)
		return;
	char num[64], ts[48];
	snprintf(num, sizeof num, "\",\"FailingStreak\":%d,\"Log\":[", failing_streak);
	wb_str(&w, "{\"Status\":\"");
	wb_str(&w, health_status);
	wb_str(&w, num);
	for (int i = 0; i < hlog_n; i++) {
		struct probe_rec *r = &hlog[i];
		wb_str(&w, i ? ",{\"Start\":\"" : "{\"Start\":\"");
		fmt_time(ts, sizeof ts, r->start);
		wb_str(&w, ts);
		wb_str(&w, "\",\"End\":\"");
		fmt_time(ts, sizeof ts, r->end);
		wb_str(&w, ts);
		snprintf(num, sizeof num, "\",\"ExitCode\":%d,\"Output\":\"", r->exit_code);
		wb_str(&w, num);
		wb_json(&w, (const unsigned char *)r->out, r->out_len);
		wb_str(&w, "\"}");
	}
	wb_str(&w, "]}\n");
	wb_flush(&w);
	atomic_commit(w.fd, "health.json.tmp", "health.json", w.err);
}

static void sync_send(const char *msg, int close_after) {
	if (opt.sync_fd < 0)
		return;
	if (write_all(opt.sync_fd, msg, strlen(msg)) < 0 && errno != EPIPE) /* EPIPE: nobody listens */
		diag("sync write: %s", strerror(errno));
	if (close_after)
		close_fd(&opt.sync_fd);
}

static int stop_requested(void) { return faccessat(state_dirfd, "stop-requested", F_OK, 0) == 0; }

/* ---- json-file log ------------------------------------------------------------------ */

static void log_open(int truncate) {
	if (!opt.log_path)
		return;
	log_fd = open(opt.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0640);
	struct stat sb;
	if (log_fd < 0)
		diag("open log %s: %s", opt.log_path, strerror(errno));
	else
		log_size = fstat(log_fd, &sb) == 0 ? sb.st_size : 0;
}

/* FILE.(n-1) -> FILE.n ... FILE -> FILE.1, keeping max-file files in total. */
static void log_rotate(void) {
	close_fd(&log_fd);
	for (int i = opt.log_max_file - 1; i >= 1; i--) {
		char *from = i == 1 ? xprintf("%s", opt.log_path) : xprintf("%s.%d", opt.log_path, i - 1);
		char *to = xprintf("%s.%d", opt.log_path, i);
		if (rename(from, to) < 0 && errno != ENOENT)
			diag("rotate %s: %s", from, strerror(errno));
		free(from);
		free(to);
	}
	log_open(1); /* with max-file 1 this just truncates */
}

/* Append one entry to w (a batch the caller flushes), rotating first when full. */
static void log_entry(struct wbuf *w, int type, const unsigned char *data, size_t len, int64_t ts) {
	if (log_fd >= 0 && opt.log_max_size > 0 && log_size + w->total + (long long)w->len >= opt.log_max_size) {
		wb_flush(w);
		log_size += w->total;
		w->total = 0;
		log_rotate();
		w->fd = log_fd;
	}
	if (log_fd < 0)
		return;
	char tbuf[48];
	fmt_time(tbuf, sizeof tbuf, ts);
	wb_str(w, "{\"log\":\"");
	wb_json(w, data, len);
	wb_str(w, type == F_STDERR ? "\",\"stream\":\"stderr\",\"time\":\"" : "\",\"stream\":\"stdout\",\"time\":\"");
	wb_str(w, tbuf);
	wb_str(w, "\"}\n");
}

/* ---- attach clients ---------------------------------------------------------------- */

/* Dead clients are removed at the end of a loop pass, so indices stay valid. */
static void clients_compact(void) {
	int j = 0;
	for (int i = 0; i < nclients; i++) {
		if (!clients[i].dead) {
			clients[j++] = clients[i];
			continue;
		}
		close(clients[i].fd);
		free(clients[i].payload);
		free(clients[i].out);
	}
	nclients = j;
}

static size_t backlog(const struct client *c) { return c->out_len - c->out_off; }

static int queue_append(struct client *c, const void *p, size_t n) {
	if (c->out_off && c->out_len + n > c->out_cap) { /* compact first */
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 65536;
		while (cap < c->out_len + n)
			cap *= 2;
		unsigned char *nb = realloc(c->out, cap);
		if (!nb)
			return -1;
		c->out = nb;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return 0;
}

/* Queue one frame for a client, writing directly when nothing is queued. */
static void client_send(struct client *c, int type, const void *data, size_t len) {
	unsigned char hdr[8] = { (unsigned char)type, 0, 0, 0, (unsigned char)(len >> 24),
				 (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len };
	size_t done = 0;
	if (c->dead)
		return;
	if (backlog(c) == 0) {
		struct iovec iov[2] = { { hdr, 8 }, { (void *)data, len } };
		ssize_t w;
		do
			w = writev(c->fd, iov, len ? 2 : 1);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN) {
			c->dead = 1;
			return;
		}
		done = w > 0 ? (size_t)w : 0;
		c->progress_ms = now_ms();
	}
	if (done == len + 8)
		return;
	size_t off = done > 8 ? done - 8 : 0;
	if ((done < 8 && queue_append(c, hdr + done, 8 - done) < 0) ||
	    queue_append(c, (const char *)data + off, len - off) < 0)
		c->dead = 1;
}

static void broadcast(int type, const void *data, size_t len) {
	for (int i = 0; i < nclients; i++)
		client_send(&clients[i], type, data, len);
}

static void client_flush(struct client *c) {
	while (backlog(c) > 0) {
		ssize_t w = write(c->fd, c->out + c->out_off, backlog(c));
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			c->dead = errno != EAGAIN;
			return;
		}
		c->out_off += (size_t)w;
		c->progress_ms = now_ms();
	}
	if (c->out_cap > 65536) { /* give big buffers back once drained */
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	c->out_off = c->out_len = 0;
}

/* Container output pauses (back-pressure) while a client lags too far behind. */
static int output_paused(void) {
	for (int i = 0; i < nclients; i++)
		if (!clients[i].dead && backlog(&clients[i]) > CLIENT_HIGH)
			return 1;
	return 0;
}

static void accept_clients(void) {
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0)
			return;
		if (nclients >= MAX_CLIENTS || phase == P_FINISHING) {
			close(fd);
			continue;
		}
		struct client *c = &clients[nclients++];
		memset(c, 0, sizeof *c);
		c->fd = fd;
		c->progress_ms = now_ms();
	}
}

/* ---- container stdin ------------------------------------------------------------------ */

static void stdin_close(void) {
	if (stdin_fd >= 0 && stdin_fd != pty_fd)
		close(stdin_fd);
	stdin_fd = -1;
	free(stdin_pend);
	stdin_pend = NULL;
	stdin_pend_len = stdin_pend_off = 0;
	stdin_close_after = 0;
}

/* Write what the container accepts now; keep the rest (takes ownership of buf). */
static void stdin_feed(unsigned char *buf, size_t len) {
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(stdin_fd, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0) { /* EPIPE: the container closed its stdin */
			free(buf);
			if (stdin_fd != pty_fd)
				stdin_close();
			return;
		}
		off += (size_t)w;
	}
	if (off == len) {
		free(buf);
		return;
	}
	stdin_pend = buf;
	stdin_pend_off = off;
	stdin_pend_len = len;
}

static void stdin_drain(void) {
	unsigned char *buf = stdin_pend;
	size_t off = stdin_pend_off, len = stdin_pend_len;
	int close_after = stdin_close_after;
	stdin_pend = NULL;
	stdin_pend_len = stdin_pend_off = 0;
	memmove(buf, buf + off, len - off);
	stdin_feed(buf, len - off);
	if (!stdin_pend && close_after && stdin_fd != pty_fd)
		stdin_close();
	else
		stdin_close_after = close_after;
}

static void apply_winsize(void) {
	struct winsize ws = { .ws_row = (unsigned short)win_rows, .ws_col = (unsigned short)win_cols };
	if (pty_fd >= 0 && win_rows > 0 && win_cols > 0 && ioctl(pty_fd, TIOCSWINSZ, &ws) < 0)
		diag("TIOCSWINSZ: %s", strerror(errno));
}

/* One complete frame from a client. Takes ownership of payload. */
static void client_frame(int type, unsigned char *payload, size_t len) {
	char tmp[64];
	switch (type) {
	case F_STDIN:
		if (stdin_fd >= 0 && len > 0 && phase == P_RUNNING) {
			stdin_feed(payload, len);
			return;
		}
		break;
	case F_RESIZE: /* "ROWS COLS"; remembered for a pty that comes later */
		snprintf(tmp, sizeof tmp, "%.*s", (int)(len < 60 ? len : 60), payload ? (char *)payload : "");
		if (sscanf(tmp, "%d %d", &win_rows, &win_cols) == 2)
			apply_winsize();
		break;
	case F_CLOSE_STDIN: /* with a tty a no-op (like Docker): the pty stays */
		if (stdin_fd >= 0 && stdin_fd != pty_fd) {
			if (stdin_pend)
				stdin_close_after = 1;
			else
				stdin_close();
		}
		break;
	case F_START:
		start_requested = phase == P_WAIT_START;
		break;
	}
	free(payload);
}

static void client_read(struct client *c) {
	/* Stop after START so that frames behind it are handled once the
	 * container runs; stop while the container's stdin is backed up. */
	while (!c->dead && !stdin_pend && !start_requested) {
		ssize_t r;
		if (c->hdr_got < 8)
			r = read(c->fd, c->hdr + c->hdr_got, 8 - c->hdr_got);
		else
			r = read(c->fd, c->payload + c->pgot, c->plen - c->pgot);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) { /* EOF: the client went away (a half-close counts too) */
			c->dead = r == 0 || errno != EAGAIN;
			return;
		}
		if (c->hdr_got < 8) {
			if ((c->hdr_got += (size_t)r) < 8)
				continue;
			c->plen = (uint32_t)c->hdr[4] << 24 | (uint32_t)c->hdr[5] << 16 | (uint32_t)c->hdr[6] << 8 | c->hdr[7];
			c->pgot = 0;
			if (c->plen > MAX_FRAME || (c->plen && !(c->payload = malloc(c->plen)))) {
				c->dead = 1;
				return;
			}
		} else
			c->pgot += (uint32_t)r;
		if (c->pgot < c->plen)
			continue;
		unsigned char *p = c->payload;
		c->payload = NULL;
		c->hdr_got = 0;
		client_frame(c->hdr[0], p, c->plen);
	}
}

/* ---- container output ---------------------------------------------------------------- */

/*
 * Log complete lines from the stream buffer (with their "\n"); a line that
 * fills the whole 16 KiB buffer is logged as a partial entry without "\n",
 * and at EOF (flush) the remainder is logged as it is -- Docker's behaviour.
 */
static void stream_log_lines(struct stream *s, int flush) {
	int64_t ts = now_real();
	size_t start = 0;
	unsigned char *nl;
	struct wbuf w = { .fd = log_fd }; /* one write() for all lines of this read */
	while ((nl = memchr(s->buf + start, '\n', s->len - start))) {
		size_t end = (size_t)(nl - s->buf) + 1;
		log_entry(&w, s->type, s->buf + start, end - start, ts);
		start = end;
	}
	if (start < s->len && (flush || (start == 0 && s->len == LOG_LINE_MAX))) {
		log_entry(&w, s->type, s->buf + start, s->len - start, ts);
		start = s->len;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
	wb_flush(&w);
	log_size += w.total;
	if (w.err)
		diag("write log: %s", strerror(w.err));
}

static void stream_close(struct stream *s) {
	if (s->buf && s->len)
		stream_log_lines(s, 1);
	free(s->buf);
	s->buf = NULL;
	s->len = 0;
	if (s->fd >= 0 && s->fd == pty_fd) {
		if (stdin_fd == pty_fd)
			stdin_close();
		pty_fd = -1;
	}
	close_fd(&s->fd);
}

/* Read once; returns 1 after data, 0 at EOF (stream closed), -1 if nothing to read. */
static int stream_read(struct stream *s) {
	if (!s->buf && !(s->buf = malloc(LOG_LINE_MAX)))
		return -1;
	ssize_t n;
	do
		n = read(s->fd, s->buf + s->len, LOG_LINE_MAX - s->len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return -1;
	if (n <= 0) { /* EOF, or EIO from a pty whose last slave closed */
		stream_close(s);
		return 0;
	}
	broadcast(s->type, s->buf + s->len, (size_t)n);
	s->len += (size_t)n;
	stream_log_lines(s, 0);
	return 1;
}

/* ---- running runtime commands ---------------------------------------------------------- */

/* fork+exec with the given stdio (-1: keep our /dev/null) and default signal state. */
static pid_t spawn(char *const argv[], int in, int out, int err) {
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	reset_signals();
	if ((in < 0 || dup2(in, 0) == 0) && (out < 0 || dup2(out, 1) == 1) && (err < 0 || dup2(err, 2) == 2))
		execvp(argv[0], argv);
	_exit(127);
}

static int run_sync(char *const argv[], int in, int out, int err) {
	int st;
	pid_t pid = spawn(argv, in, out, err);
	if (pid < 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

/* RUNTIME --root R --log LOGFILE --log-format json CMD; returns the count. */
static int runtime_argv(char **v, const char *cmd, const char *logfile) {
	const char *a[] = { opt.runtime, "--root", opt.runtime_root, "--log", logfile, "--log-format", "json", cmd };
	for (int i = 0; i < 8; i++)
		v[i] = (char *)a[i];
	return 8;
}

static void runtime_delete(void) {
	char *v[16];
	/* No log file in the state dir: the engine may remove that dir meanwhile. */
	int n = runtime_argv(v, "delete", "/dev/null"), st;
	v[n++] = "--force";
	v[n++] = (char *)opt.id;
	v[n] = NULL;
	if ((st = run_sync(v, -1, -1, -1)) != 0)
		diag("runtime delete exited with status %d", st);
}

/*
 * The runtime's error, readable and on one line: with --log set, runc prints
 * the bare message on stderr; a logrus text line (time=... level=error
 * msg="...") is unwrapped too.
 */
static void take_runtime_error(int fd, int st) {
	char raw[4096], *src = raw, *m = NULL;
	size_t k = 0;
	if (fd >= 0)
		read_fd(fd, raw, sizeof raw);
	else
		raw[0] = '\0';
	for (char *p = strstr(raw, "msg=\""); p; p = strstr(p + 1, "msg=\""))
		m = p;
	if (m) { /* unquote the last msg="..." */
		for (src = m + 5; *src && *src != '"' && k + 1 < sizeof error_msg; src++)
			error_msg[k++] = *src == '\\' && src[1] ? *++src : *src;
	} else {
		src += strspn(src, " \t\r\n");
		for (; *src && k + 1 < sizeof error_msg; src++)
			error_msg[k++] = (*src == '\n' || *src == '\r' || *src == '\t') ? ' ' : *src;
	}
	while (k > 0 && error_msg[k - 1] == ' ')
		k--;
	error_msg[k] = '\0';
	if (k == 0 && st < 0)
		snprintf(error_msg, sizeof error_msg, "cannot run %s: %s", opt.runtime, strerror(errno));
	else if (k == 0)
		snprintf(error_msg, sizeof error_msg, "%s exited with status %d", opt.runtime, exit_status(st));
}

/* Find the file that counts OOM kills for the container's memory cgroup. */
static void find_oom_file(pid_t pid) {
	char path[64], buf[4096], *v2 = NULL, *save;
	free(oom_file);
	oom_file = NULL;
	snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
	if (read_small(-1, path, buf, sizeof buf) <= 0)
		return;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *s2;
		if (!c2)
			continue;
		*c2 = '\0';
		if (c2 == c1 + 1) { /* "0::/path": cgroup v2 */
			v2 = c2 + 1;
			continue;
		}
		for (char *ctl = strtok_r(c1 + 1, ",", &s2); ctl; ctl = strtok_r(NULL, ",", &s2))
			if (strcmp(ctl, "memory") == 0) {
				oom_file = xprintf("/sys/fs/cgroup/memory%s/memory.oom_control", c2 + 1);
				return;
			}
	}
	if (v2) {
		int unified = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
		oom_file = xprintf("/sys/fs/cgroup%s%s/memory.events", unified ? "" : "/unified", v2);
	}
}

/* "oom_kill N" in memory.oom_control (v1) or memory.events (v2). */
static int read_oom(void) {
	char buf[1024];
	if (!oom_file || read_small(-1, oom_file, buf, sizeof buf) <= 0)
		return 0;
	for (char *p = buf; p; p = strchr(p, '\n')) {
		p += *p == '\n';
		if (strncmp(p, "oom_kill ", 9) == 0)
			return atoll(p + 9) > 0;
	}
	return 0;
}

/* Listening unix socket NAME in the state dir; bound via /proc/self/fd so long paths work. */
static int listen_unix(const char *name) {
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/%s", state_dirfd, name);
	unlinkat(state_dirfd, name, 0);
	mode_t old = umask(077); /* the socket is 0600 */
	int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0) {
		diag("listen %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	set_nonblock(fd);
	return fd;
}

/* runc's --console-socket protocol: one message carrying the pty master (SCM_RIGHTS). */
static int receive_pty(int lfd) {
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	char data[512];
	struct iovec iov = { data, sizeof data };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b };
	int fd = -1, conn;
	if (poll(&p, 1, 5000) <= 0 || (conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return -1;
	p.fd = conn;
	if (poll(&p, 1, 5000) > 0 && recvmsg(conn, &m, MSG_CMSG_CLOEXEC) >= 0)
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				memcpy(&fd, CMSG_DATA(c), sizeof fd);
	close(conn);
	return fd;
}

/* ---- healthcheck ------------------------------------------------------------------------ */

static void health_reset(void) {
	if (!opt.health_argc)
		return;
	health_status = "starting";
	failing_streak = 0;
	write_health();
	next_probe_ms = now_ms() + ns_to_ms(opt.health_interval);
}

/* Record one probe result and apply Docker's state transitions. */
static void probe_record(int code, const char *out, size_t len) {
	if (hlog_n == HEALTH_LOG_KEEP) {
		free(hlog[0].out);
		memmove(hlog, hlog + 1, sizeof hlog[0] * (HEALTH_LOG_KEEP - 1));
		hlog_n--;
	}
	struct probe_rec *r = &hlog[hlog_n++];
	r->start = probe_start_ns;
	r->end = now_real();
	r->exit_code = code;
	r->out = malloc(len + 1);
	r->out_len = r->out ? len : 0;
	if (r->out && len)
		memcpy(r->out, out, len);
	if (code == 0) {
		health_status = "healthy";
		failing_streak = 0;
	} else if (!(strcmp(health_status, "starting") == 0 && probe_start_ns - started_at < opt.health_start_period)) {
		/* (failures inside the start period do not count) */
		if (++failing_streak >= opt.health_retries)
			health_status = "unhealthy";
	}
	write_health();
}

static void probe_read(void) {
	char scratch[4096];
	for (;;) { /* keep the first PROBE_OUT_MAX bytes, discard the rest */
		int keep = probe_len < PROBE_OUT_MAX;
		ssize_t r = read(probe_fd, keep ? probe_buf + probe_len : scratch,
				 keep ? PROBE_OUT_MAX - probe_len : sizeof scratch);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			close_fd(&probe_fd);
		if (r <= 0)
			return;
		if (keep)
			probe_len += (size_t)r;
	}
}

static void probe_end(void) {
	close_fd(&probe_fd);
	free(probe_buf);
	probe_buf = NULL;
	probe_pid = -1;
	next_probe_ms = now_ms() + ns_to_ms(opt.health_interval);
}

/* RUNTIME exec --pid-file STATE/probe.pid ID ARGV..., output into one pipe. */
static void probe_start(void) {
	int p[2];
	char **v = calloc((size_t)opt.health_argc + 16, sizeof *v);
	probe_buf = malloc(PROBE_OUT_MAX);
	if (!v || !probe_buf || pipe2(p, O_CLOEXEC) < 0) {
		free(v);
		probe_end();
		return;
	}
	unlinkat(state_dirfd, "probe.pid", 0);
	int n = runtime_argv(v, "exec", "/dev/null");
	v[n++] = "--pid-file";
	v[n++] = probe_pid_path;
	v[n++] = (char *)opt.id;
	for (int i = 0; i < opt.health_argc; i++)
		v[n++] = opt.health_argv[i];
	probe_len = 0;
	probe_start_ns = now_real();
	probe_pid = spawn(v, -1, p[1], p[1]);
	free(v);
	close(p[1]);
	probe_fd = p[0];
	set_nonblock(probe_fd);
	probe_deadline_ms = now_ms() + ns_to_ms(opt.health_timeout);
	if (probe_pid < 0) {
		probe_record(-1, "cannot run healthcheck", 22);
		probe_end();
	}
}

/* Kill the probe's process in the container (from runc's pid file) and runc itself. */
static void probe_kill(void) {
	char buf[32];
	if (read_small(state_dirfd, "probe.pid", buf, sizeof buf) > 0 && atoi(buf) > 0)
		kill(atoi(buf), SIGKILL);
	kill(probe_pid, SIGKILL);
}

static void probe_timeout(void) {
	char msg[96], d[48];
	go_duration(d, sizeof d, opt.health_timeout);
	int n = snprintf(msg, sizeof msg, "Health check exceeded timeout (%s)", d);
	probe_kill();
	probe_record(-1, msg, (size_t)n);
	probe_end(); /* runc is reaped later as an unknown child */
}

static void probe_exited(int st) {
	if (probe_fd >= 0)
		probe_read();
	probe_record(exit_status(st), probe_buf, probe_len);
	probe_end();
}

/* ---- container lifecycle ----------------------------------------------------------------- */

/* Start the container; 0 on success, -1 with error_msg set. */
static int start_container(void) {
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, er[2] = { -1, -1 }, p[2] = { -1, -1 };
	int csock = -1, rc = -1, n, st;
	char *v[24], buf[32];
	error_msg[0] = '\0';
	unlinkat(state_dirfd, "pid", 0);
	if ((opt.open_stdin && !opt.tty && pipe2(in, O_CLOEXEC) < 0) || (!opt.tty && pipe2(out, O_CLOEXEC) < 0) ||
	    pipe2(er, O_CLOEXEC) < 0 || (opt.tty && (csock = listen_unix("console.sock")) < 0)) {
		snprintf(error_msg, sizeof error_msg, "cannot set up the container's stdio: %s", strerror(errno));
		goto out;
	}
	/* With a tty: create, set the window size, then start -- so the first
	 * thing the process sees is the right size.  Without: run --detach.
	 * Without a tty runc's own stderr is the container's stderr pipe; we
	 * read from it only after a failure (the container never ran then). */
	n = runtime_argv(v, opt.tty ? "create" : "run", runc_log_path);
	if (!opt.tty)
		v[n++] = "--detach";
	v[n++] = "--pid-file";
	v[n++] = pid_path;
	v[n++] = "--bundle";
	v[n++] = (char *)opt.bundle;
	if (opt.tty) {
		v[n++] = "--console-socket";
		v[n++] = console_path;
	}
	v[n++] = (char *)opt.id;
	v[n] = NULL;
	set_nonblock(er[0]);
	st = run_sync(v, in[0], opt.tty ? er[1] : out[1], er[1]);
	close_fd(&in[0]);
	close_fd(&out[1]);
	close_fd(&er[1]);
	if (st != 0) {
		take_runtime_error(er[0], st);
		goto fail;
	}
	if (opt.tty) {
		if ((pty_fd = receive_pty(csock)) < 0) {
			snprintf(error_msg, sizeof error_msg, "did not receive the container's terminal");
			goto fail;
		}
		apply_winsize();
		n = runtime_argv(v, "start", runc_log_path);
		v[n++] = (char *)opt.id;
		v[n] = NULL;
		if (pipe2(p, O_CLOEXEC) < 0)
			goto fail;
		set_nonblock(p[0]);
		st = run_sync(v, -1, p[1], p[1]);
		close_fd(&p[1]);
		if (st != 0) {
			take_runtime_error(p[0], st);
			goto fail;
		}
	}
	if (read_small(state_dirfd, "pid", buf, sizeof buf) <= 0 || atoi(buf) <= 0) {
		snprintf(error_msg, sizeof error_msg, "the runtime did not write the container's pid");
		goto fail;
	}
	ctr_pid = atoi(buf);
	if (opt.tty) {
		set_nonblock(pty_fd);
		streams[0].fd = pty_fd;
		stdin_fd = opt.open_stdin ? pty_fd : -1;
	} else {
		streams[0].fd = out[0];
		streams[1].fd = er[0];
		stdin_fd = in[1];
		out[0] = er[0] = in[1] = -1;
		set_nonblock(streams[0].fd);
		set_nonblock(streams[1].fd);
		if (stdin_fd >= 0)
			set_nonblock(stdin_fd);
	}
	find_oom_file(ctr_pid);
	started_at = now_real();
	started_ms = now_ms();
	finished_at = 0;
	exit_code = -1;
	oom_killed = 0;
	status = "running";
	phase = P_RUNNING;
	write_state();
	health_reset();
	diag("container %s started, pid %d", opt.id, (int)ctr_pid);
	rc = 0;
	goto out;
fail:
	diag("start failed: %s", error_msg);
	close_fd(&pty_fd);
	runtime_delete(); /* a half-created container must not linger */
out:
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&er[i]);
		close_fd(&p[i]);
	}
	if (csock >= 0) {
		close(csock);
		unlinkat(state_dirfd, "console.sock", 0);
	}
	return rc;
}

/* Final state: write it, tell clients, then flush them before exiting. */
static void finish(const char *final_status, int rc, int exit_cmd) {
	char code[16];
	status = final_status;
	ctr_pid = -1;
	write_state();
	if (strcmp(final_status, "failed") == 0)
		broadcast(F_ERROR, error_msg, strlen(error_msg));
	else
		broadcast(F_EXIT, code, (size_t)snprintf(code, sizeof code, "%d", exit_code));
	close_fd(&listen_fd);
	unlinkat(state_dirfd, "attach.sock", 0);
	final_rc = rc;
	run_exit_cmd = exit_cmd;
	phase = P_FINISHING;
	finish_deadline_ms = now_ms() + FLUSH_MS;
}

static void do_start(int initial) {
	char msg[sizeof error_msg + 16];
	if (start_container() == 0) {
		snprintf(msg, sizeof msg, "ok %d\n", (int)ctr_pid);
		sync_send(msg, 1);
		return;
	}
	snprintf(msg, sizeof msg, "error %s\n", error_msg);
	sync_send(msg, 1);
	/* The caller cleans up after a failed first start; after a failed
	 * restart nobody waits, so the exit command runs. */
	finish("failed", 1, !initial);
}

static void set_restart_policy(const char *flag, const char *v);

/* `dockyard update --restart` writes "restart-policy" in the state dir: the policy
 * in force from the next exit on, replacing the one given on the command line. */
static void reload_restart_policy(void) {
	char buf[64];
	int fd = openat(state_dirfd, "restart-policy", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	opt.restart_max = 0;
	set_restart_policy("restart-policy", buf);
}

static int should_restart(void) {
	if (stop_requested())
		return 0;
	reload_restart_policy();
	switch (opt.restart) {
	case R_ALWAYS:
	case R_UNLESS_STOPPED:
		return 1;
	case R_ON_FAILURE:
		return exit_code != 0 && (opt.restart_max <= 0 || restart_count < opt.restart_max);
	}
	return 0;
}

static void container_exited(int st) {
	finished_at = now_real();
	exit_code = exit_status(st);
	for (int i = 0; i < 2; i++) { /* take what is still buffered, then close */
		while (streams[i].fd >= 0 && stream_read(&streams[i]) > 0)
			;
		stream_close(&streams[i]);
	}
	stdin_close();
	close_fd(&pty_fd);
	if (probe_pid > 0) {
		probe_kill();
		probe_end();
	}
	oom_killed = read_oom();
	diag("container exited with code %d%s", exit_code, oom_killed ? " (OOM killed)" : "");
	ctr_pid = -1;
	/* Docker's back-off: 100ms doubling to 1 min, reset after a 10s run. */
	if (now_ms() - started_ms >= 10000)
		restart_delay_ms = 0;
	restart_delay_ms = restart_delay_ms ? restart_delay_ms * 2 : 100;
	if (restart_delay_ms > RESTART_MAX_DELAY_MS)
		restart_delay_ms = RESTART_MAX_DELAY_MS;
	if (!should_restart()) {
		/* Tell attached clients first: the runtime's clean-up need not delay them. */
		finish("exited", 0, 1);
		for (int i = 0; i < nclients; i++)
			client_flush(&clients[i]);
		runtime_delete();
		return;
	}
	runtime_delete();
	status = "restarting";
	write_state();
	phase = P_RESTART_WAIT;
	restart_at_ms = now_ms() + restart_delay_ms;
}

static void reap_children(void) {
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == ctr_pid && phase == P_RUNNING)
			container_exited(st);
		else if (pid == probe_pid)
			probe_exited(st);
		/* else: an orphan re-parented to us (we are a subreaper) */
	}
}

static void handle_signals(void) {
	struct signalfd_siginfo si;
	while (read(sig_fd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGCHLD) {
			reap_children();
			continue;
		}
		diag("SIGTERM in phase %d", (int)phase);
		if (phase == P_WAIT_START) { /* never started: just go away */
			unlinkat(state_dirfd, "attach.sock", 0);
			_exit(0);
		}
		if (phase == P_RESTART_WAIT) /* cancel the pending restart */
			finish("exited", 0, 1);
		/* while running: ignored -- stop the container through the runtime */
	}
}

/* ---- main loop ------------------------------------------------------------------------------ */

enum { T_SIG, T_LISTEN, T_STREAM0, T_STREAM1, T_STDIN, T_PROBE, T_CLIENT };

static int poll_timeout(void) {
	long long now = now_ms(), t = LLONG_MAX;
#define CONSIDER(cond, x) if ((cond) && (x) < t) t = (x)
	CONSIDER(phase == P_RUNNING && opt.health_argc && probe_pid < 0, next_probe_ms);
	CONSIDER(probe_pid > 0, probe_deadline_ms);
	CONSIDER(phase == P_RESTART_WAIT, restart_at_ms);
	CONSIDER(phase == P_FINISHING, finish_deadline_ms);
	for (int i = 0; i < nclients; i++)
		CONSIDER(backlog(&clients[i]) > CLIENT_HIGH, clients[i].progress_ms + CLIENT_STALL_MS);
#undef CONSIDER
	if (t == LLONG_MAX)
		return -1;
	return t <= now ? 0 : t - now > INT_MAX ? INT_MAX : (int)(t - now);
}

static void run_timers(void) {
	long long now = now_ms();
	if (probe_pid > 0 && now >= probe_deadline_ms)
		probe_timeout();
	else if (phase == P_RUNNING && opt.health_argc && probe_pid < 0 && now >= next_probe_ms)
		probe_start();
	if (phase == P_RESTART_WAIT && now >= restart_at_ms) {
		if (stop_requested()) {
			finish("exited", 0, 1);
		} else {
			restart_count++;
			do_start(0);
		}
	}
	for (int i = 0; i < nclients; i++)
		if (backlog(&clients[i]) > CLIENT_HIGH && now >= clients[i].progress_ms + CLIENT_STALL_MS) {
			diag("dropping an attach client that stopped reading");
			clients[i].dead = 1;
		}
}

static int flushed(void) {
	for (int i = 0; i < nclients; i++)
		if (!clients[i].dead && backlog(&clients[i]) > 0)
			return 0;
	return 1;
}

static void main_loop(void) {
	struct pollfd pfd[8 + MAX_CLIENTS];
	int tag[8 + MAX_CLIENTS];
	while (phase != P_FINISHING || (!flushed() && now_ms() < finish_deadline_ms)) {
		int n = 0, paused = output_paused();
#define ADD(f, ev, t) (pfd[n].fd = (f), pfd[n].events = (ev), pfd[n].revents = 0, tag[n++] = (t))
		ADD(sig_fd, POLLIN, T_SIG);
		if (listen_fd >= 0)
			ADD(listen_fd, POLLIN, T_LISTEN);
		for (int i = 0; i < 2; i++)
			if (streams[i].fd >= 0 && !paused)
				ADD(streams[i].fd, POLLIN, T_STREAM0 + i);
		if (stdin_pend && stdin_fd >= 0)
			ADD(stdin_fd, POLLOUT, T_STDIN);
		if (probe_fd >= 0)
			ADD(probe_fd, POLLIN, T_PROBE);
		for (int i = 0; i < nclients; i++) {
			short ev = (!stdin_pend && phase != P_FINISHING ? POLLIN : 0) | (backlog(&clients[i]) ? POLLOUT : 0);
			if (ev) /* (a polled fd reports POLLHUP even without events: it would spin) */
				ADD(clients[i].fd, ev, T_CLIENT + i);
		}
#undef ADD
		int r = poll(pfd, (nfds_t)n, poll_timeout());
		if (r < 0 && errno != EINTR) {
			diag("poll: %s", strerror(errno));
			sleep(1);
		}
		for (int i = 0; r > 0 && i < n; i++) {
			short re = pfd[i].revents;
			int t = tag[i];
			struct stream *s = t == T_STREAM0 || t == T_STREAM1 ? &streams[t - T_STREAM0] : NULL;
			if (!re)
				continue;
			if (t == T_LISTEN && listen_fd >= 0)
				accept_clients();
			else if (s && s->fd == pfd[i].fd) {
				/* a bounded burst per wake-up keeps clients and signals served */
				for (int k = 0; k < 8 && s->fd >= 0 && !output_paused(); k++)
					if (stream_read(s) < 0)
						break;
			} else if (t == T_STDIN && stdin_pend)
				stdin_drain();
			else if (t == T_PROBE && probe_fd == pfd[i].fd)
				probe_read();
			else if (t >= T_CLIENT) {
				if (re & POLLOUT)
					client_flush(&clients[t - T_CLIENT]);
				if (re & (POLLIN | POLLHUP | POLLERR))
					client_read(&clients[t - T_CLIENT]);
			}
		}
		handle_signals(); /* after the fds, so output is read before an exit is handled */
		run_timers();
		if (start_requested && phase == P_WAIT_START) {
			start_requested = 0;
			do_start(1);
		}
		clients_compact();
	}
}

/* ---- start-up ------------------------------------------------------------------------------- */

/* Bad invocation: say so on stderr and, if known already, on the sync fd. */
__attribute__((noreturn)) static void usage(const char *fmt, const char *arg) {
	char buf[512];
	int n = snprintf(buf, sizeof buf, "error dockyard-monitor: ");
	n += snprintf(buf + n, sizeof buf - (size_t)n, fmt, arg);
	snprintf(buf + n, sizeof buf - (size_t)n, "\n");
	fputs(buf + 6, stderr);
	if (opt.sync_fd >= 0 && write_all(opt.sync_fd, buf, strlen(buf)) < 0)
		exit(2);
	exit(2);
}

static long long parse_num(const char *flag, const char *v) {
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || *end || end == v || x < 0)
		usage("invalid value for %s", flag);
	return x;
}

static const char *absolute(const char *p) {
	char cwd[PATH_MAX];
	if (!p || p[0] == '/')
		return p;
	if (!getcwd(cwd, sizeof cwd))
		usage("cannot resolve %s", p);
	return xprintf("%s/%s", cwd, p);
}

/* The command line: "--flag" for booleans, "--flag VALUE" for everything else. */
enum arg_kind { A_BOOL, A_STR, A_NUM, A_INT, A_HEALTH_ARG, A_EXIT_ARG, A_RESTART };
static const struct { const char *name; enum arg_kind kind; void *dst; } args[] = {
	{ "--id", A_STR, &opt.id }, { "--runtime", A_STR, &opt.runtime },
	{ "--runtime-root", A_STR, &opt.runtime_root }, { "--bundle", A_STR, &opt.bundle },
	{ "--state-dir", A_STR, &opt.state_dir }, { "--log-path", A_STR, &opt.log_path },
	{ "--log-max-size", A_NUM, &opt.log_max_size }, { "--log-max-file", A_INT, &opt.log_max_file },
	{ "--tty", A_BOOL, &opt.tty }, { "--stdin", A_BOOL, &opt.open_stdin },
	{ "--wait-attach", A_BOOL, &opt.wait_attach }, { "--sync-fd", A_INT, &opt.sync_fd },
	{ "--restart", A_RESTART, NULL }, { "--restart-max", A_INT, &opt.restart_max },
	{ "--health-cmd", A_HEALTH_ARG, NULL }, { "--health-interval", A_NUM, &opt.health_interval },
	{ "--health-timeout", A_NUM, &opt.health_timeout }, { "--health-retries", A_INT, &opt.health_retries },
	{ "--health-start-period", A_NUM, &opt.health_start_period }, { "--exit-command", A_EXIT_ARG, NULL },
};

/* Docker's policy names, "on-failure:N" accepted too. */
static void set_restart_policy(const char *flag, const char *v) {
	if (!strcmp(v, "no"))
		opt.restart = R_NO;
	else if (!strcmp(v, "always"))
		opt.restart = R_ALWAYS;
	else if (!strcmp(v, "unless-stopped"))
		opt.restart = R_UNLESS_STOPPED;
	else if (!strncmp(v, "on-failure", 10) && (v[10] == '\0' || v[10] == ':')) {
		opt.restart = R_ON_FAILURE;
		if (v[10] == ':') /* a bad count ends the monitor only while it starts */
			opt.restart_max = state_dirfd < 0 ? (int)parse_num(flag, v + 11) : atoi(v + 11);
	} else if (state_dirfd < 0)
		usage("--restart must be no, always, unless-stopped or on-failure, not %s", v);
	else
		diag("ignoring restart policy %s", v);
}

static void parse_args(int argc, char **argv) {
	opt.health_argv = calloc((size_t)argc + 1, sizeof(char *));
	opt.exit_argv = calloc((size_t)argc + 1, sizeof(char *));
	if (!opt.health_argv || !opt.exit_argv)
		usage("%s", "out of memory");
	for (int i = 1; i < argc; i++) {
		size_t k = 0;
		while (k < sizeof args / sizeof args[0] && strcmp(args[k].name, argv[i]) != 0)
			k++;
		if (k == sizeof args / sizeof args[0])
			usage("unknown flag: %s", argv[i]);
		if (args[k].kind == A_BOOL) {
			*(int *)args[k].dst = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage("missing value for %s", argv[i]);
		const char *a = argv[i], *v = argv[++i];
		switch (args[k].kind) {
		case A_STR:
			*(const char **)args[k].dst = v;
			break;
		case A_NUM:
			*(long long *)args[k].dst = parse_num(a, v);
			break;
		case A_INT:
			*(int *)args[k].dst = (int)parse_num(a, v);
			break;
		case A_HEALTH_ARG:
			opt.health_argv[opt.health_argc++] = (char *)v;
			break;
		case A_EXIT_ARG:
			opt.exit_argv[opt.exit_argc++] = (char *)v;
			break;
		default: /* A_RESTART */
			set_restart_policy(a, v);
		}
	}
	if (!opt.id || !opt.runtime || !opt.runtime_root || !opt.bundle || !opt.state_dir)
		usage("%s", "--id, --runtime, --runtime-root, --bundle and --state-dir are required");
	if (!opt.health_interval) /* Docker's healthcheck defaults */
		opt.health_interval = 30000000000LL;
	if (!opt.health_timeout)
		opt.health_timeout = 30000000000LL;
	if (!opt.health_retries)
		opt.health_retries = 3;
	if (opt.log_max_file < 1)
		opt.log_max_file = 1;
	if (strchr(opt.runtime, '/'))
		opt.runtime = absolute(opt.runtime);
	opt.runtime_root = absolute(opt.runtime_root);
	opt.bundle = absolute(opt.bundle);
	opt.state_dir = absolute(opt.state_dir);
	opt.log_path = absolute(opt.log_path);
}

/* Close every inherited fd except stdio and the sync fd. */
static void close_inherited(void) {
	unsigned keep = opt.sync_fd < 3 ? 2 : (unsigned)opt.sync_fd;
#ifdef SYS_close_range
	if ((keep == 2 || syscall(SYS_close_range, 3U, keep - 1, 0U) == 0) &&
	    syscall(SYS_close_range, keep + 1, ~0U, 0U) == 0)
		return;
#endif
	for (unsigned fd = 3; fd < 1024; fd++)
		if (fd != keep)
			close((int)fd);
}

int main(int argc, char **argv) {
	char buf[32];
	parse_args(argc, argv);
	if (opt.sync_fd >= 0) { /* keep it clear of stdio, which becomes /dev/null */
		int fd = fcntl(opt.sync_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0) {
			opt.sync_fd = -1;
			usage("%s", "--sync-fd is not an open file descriptor");
		}
		if (opt.sync_fd > 2)
			close(opt.sync_fd);
		opt.sync_fd = fd;
	}
	close_inherited();
	if ((state_dirfd = open(opt.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		usage("cannot open the state dir %s", opt.state_dir);
	diag_fd = openat(state_dirfd, "monitor.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	/* Detach: the caller's child exits at once, the monitor lives on in its own session. */
	pid_t pid = fork();
	if (pid < 0)
		usage("%s", "cannot fork");
	if (pid > 0)
		_exit(0);
	setsid();
	if (chdir("/") < 0)
		diag("chdir /: %s", strerror(errno));
	int null = open("/dev/null", O_RDWR);
	for (int fd = 0; null >= 0 && fd < 3; fd++)
		dup2(null, fd);
	if (null > 2)
		close(null);
	default_all_signals();
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if ((sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		diag("signalfd/subreaper: %s", strerror(errno));
		sync_send("error dockyard-monitor: cannot set up signal handling\n", 1);
		return 1;
	}

	pid_path = xprintf("%s/pid", opt.state_dir);
	probe_pid_path = xprintf("%s/probe.pid", opt.state_dir);
	runc_log_path = xprintf("%s/runc.log", opt.state_dir);
	console_path = xprintf("/proc/%d/fd/%d/console.sock", (int)getpid(), state_dirfd);
	unlinkat(state_dirfd, "stop-requested", 0); /* left over from an earlier run */
	unlinkat(state_dirfd, "health.json", 0);
	write_small_file("monitor.pid", buf, (size_t)snprintf(buf, sizeof buf, "%d\n", (int)getpid()));
	if ((listen_fd = listen_unix("attach.sock")) < 0) {
		snprintf(error_msg, sizeof error_msg, "cannot create the attach socket in %s", opt.state_dir);
		status = "failed";
		write_state();
		sync_send("error dockyard-monitor: cannot create the attach socket\n", 1);
		return 1;
	}
	log_open(0);
	write_state();
	diag("monitor for %s started", opt.id);

	if (opt.wait_attach)
		sync_send("ready\n", 0);
	else
		do_start(1);
	main_loop();

	for (int i = 0; i < nclients; i++)
		clients[i].dead = 1;
	clients_compact();
	close_fd(&log_fd);
	diag("monitor exiting (%s)", status);
	if (run_exit_cmd && opt.exit_argc) {
		reset_signals();
		prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
		diag("exec exit command %s", opt.exit_argv[0]);
		execvp(opt.exit_argv[0], opt.exit_argv);
		diag("exit command %s: %s", opt.exit_argv[0], strerror(errno));
		return 1;
	}
	return final_rc;
}
