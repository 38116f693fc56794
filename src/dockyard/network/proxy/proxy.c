/*
 * dockyard-proxy: relays TCP connections from an IPv6 host address to an IPv4
 * container, the one case the kernel's NAT cannot serve (netfilter translates
 * addresses within a family, not from IPv6 to IPv4). IPv4 bindings never come here:
 * they are DNAT rules. Docker runs its docker-proxy for the same job.
 *
 * Usage: dockyard-proxy --listen-fd N --container-ip IPv4 --container-port PORT [--store DB]
 * (--store only names the store in the command line, for its clean-up.)
 * The caller has bound and listens on fd N (so that a taken port is its error, at
 * once). Each connection gets a child process that relays both ways and half-closes
 * as the peers do; the parent only accepts. SIGTERM to the process group ends all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

static void die(const char *what) {
	fprintf(stderr, "dockyard-proxy: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int connect_target(const struct sockaddr_in *target) {
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)target, sizeof *target) < 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* Copy what is readable from `from` to `to`; 0 at end of stream, -1 on error. */
static int pump(int from, int to, char *buf) {
	ssize_t n = read(from, buf, BUF);
	if (n <= 0)
		return n == 0 ? 0 : (errno == EINTR || errno == EAGAIN ? 1 : -1);
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += w;
	}
	return 1;
}

static void relay(int client, const struct sockaddr_in *target) {
	static char buf[BUF];
	int upstream = connect_target(target);
	if (upstream < 0)
		_exit(1);
	struct pollfd p[2] = { { client, POLLIN, 0 }, { upstream, POLLIN, 0 } };
	int open_in[2] = { 1, 1 }; /* still reading from client / from upstream */
	while (open_in[0] || open_in[1]) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (!open_in[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int r = pump(p[i].fd, p[1 - i].fd, buf);
			if (r < 0)
				_exit(0);
			if (r == 0) { /* this side is done sending: pass the half-close on */
				open_in[i] = 0;
				p[i].fd = -1;
				shutdown(p[1 - i].fd, SHUT_WR);
			}
		}
	}
	_exit(0);
}

int main(int argc, char **argv) {
	int listen_fd = -1;
	const char *ip = NULL, *port = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--listen-fd"))
			listen_fd = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--container-ip"))
			ip = argv[i + 1];
		else if (!strcmp(argv[i], "--container-port"))
			port = argv[i + 1];
	}
	struct sockaddr_in target = { .sin_family = AF_INET };
	if (listen_fd < 0 || !ip || !port || inet_pton(AF_INET, ip, &target.sin_addr) != 1) {
		fprintf(stderr, "usage: dockyard-proxy --listen-fd N --container-ip IPv4 --container-port PORT\n");
		return 2;
	}
	target.sin_port = htons((unsigned short)atoi(port));
	signal(SIGCHLD, SIG_IGN); /* children reap themselves */
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		int client = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (client < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			die("accept");
		}
		pid_t pid = fork();
		if (pid == 0) {
			close(listen_fd);
			relay(client, &target);
		}
		close(client);
	}
}
