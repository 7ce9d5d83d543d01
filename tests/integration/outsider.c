/*
 * tests/integration/outsider.c: an outsider without the cluster key, holding idle TCP
 * connections to a gossip port (issue 12: "an outsider can stall artifact distribution").
 *
 *   outsider IP:PORT ADDRS PER_ADDR SECONDS
 *
 * Holds PER_ADDR connections from each of ADDRS source addresses 127.0.0.2, 127.0.0.3, ...
 * (bound before connecting), sends nothing, and re-opens each one as soon as the other side
 * closes it, for SECONDS (or until SIGTERM). Prints what it did: connections opened, and cut
 * by the other side.
 * Loopback only. Exit 0; 2 on usage or socket errors.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXC 1024

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int open_one(const struct sockaddr_in *dst, unsigned k)
{
	struct sockaddr_in src;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&src, 0, sizeof(src));
	src.sin_family = AF_INET;
	src.sin_addr.s_addr = htonl(0x7f000002u + k);
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS)) {
		close(fd);
		return -1;
	}
	return fd;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sockaddr_in dst;
	struct pollfd pfd[MAXC];
	unsigned owner[MAXC], addrs, per, n = 0;
	unsigned long opened = 0, cut = 0;
	char host[64], *colon;
	double end;
	char buf[512];

	if (argc != 5 || strlen(argv[1]) >= sizeof(host)) {
		fprintf(stderr, "usage: outsider IP:PORT ADDRS PER_ADDR SECONDS\n");
		return 2;
	}
	strcpy(host, argv[1]);
	colon = strchr(host, ':');
	if (!colon)
		return 2;
	*colon = 0;
	memset(&dst, 0, sizeof(dst));
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1)
		return 2;
	addrs = (unsigned)atoi(argv[2]);
	per = (unsigned)atoi(argv[3]);
	end = now_s() + atof(argv[4]);
	if (addrs == 0 || addrs > 200 || per == 0 || addrs * per > MAXC)
		return 2;
	for (unsigned k = 0; k < addrs; k++)
		for (unsigned i = 0; i < per; i++) {
			pfd[n].fd = open_one(&dst, k);
			pfd[n].events = POLLIN;
			owner[n++] = k;
			opened++;
		}
	signal(SIGTERM, on_term);
	while (!stop && now_s() < end) {
		if (poll(pfd, n, 50) < 0 && errno != EINTR)
			return 2;
		for (unsigned i = 0; i < n; i++) {
			bool dead = pfd[i].fd < 0;

			if (!dead && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
				ssize_t r = read(pfd[i].fd, buf, sizeof(buf));

				dead = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
			}
			if (dead) {
				if (pfd[i].fd >= 0) {
					close(pfd[i].fd);
					cut++;
				}
				pfd[i].fd = open_one(&dst, owner[i]); /* at once, as an attacker would */
				pfd[i].revents = 0;
				opened++;
			}
		}
	}
	printf("outsider: %u addresses x %u connections: %lu opened, %lu cut by the server\n",
	       addrs, per, opened, cut);
	return 0;
}
