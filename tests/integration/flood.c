/*
 * tests/integration/flood.c: an insider (it holds the cluster key) flooding one agent with
 * invented members and records through the real protocol (issue 12: "unbounded insider
 * state"). Sealed gossip datagrams, as any member sends them.
 *
 *   flood KEYRING CLUSTER IP:PORT MEMBERS RECORDS [PPS]
 *
 * First MEMBERS "alive" messages (20 to a packet) for invented ids at 127.77.x.y:9 (loopback
 * addresses where nothing answers), then RECORDS records (2 to a packet, 600-byte values,
 * keys "flood/<n>" of 100 invented owners), at most PPS packets a second (default 5000).
 * Prints what it sent. Exit 0; 2 on usage or setup errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "gossip/crypto.h"
#include "gossip/gossip.h"
#include "gossip/proto.h"

static struct gossip_crypto *cr;
static int fd;
static struct sockaddr_in dst;
static unsigned long packets, pps;
static uint8_t self_id[GOSSIP_ID_LEN];

static void pace(void)
{
	static struct timespec t0;
	struct timespec now;

	if (packets == 0)
		clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_MONOTONIC, &now);
	double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
	double due = (double)packets / (double)pps;

	if (due > el)
		usleep((useconds_t)((due - el) * 1e6));
}

static void send_packet(struct gossip_msg *m, unsigned n)
{
	uint8_t plain[GOSSIP_MTU_DEFAULT], sealed[GOSSIP_MTU_DEFAULT + 64];
	struct gossip__w w;
	size_t slen = 0;

	gossip__w_init(&w, plain, GOSSIP_MTU_DEFAULT - GOSSIP_SEAL_OVERHEAD);
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, self_id, GOSSIP_ID_LEN);
	gossip__w_array(&w, n);
	for (unsigned i = 0; i < n; i++)
		gossip__msg_put(&w, &m[i]);
	if (w.err || gossip_crypto_seal(cr, GOSSIP_SEAL_DATAGRAM, plain, w.len, sealed,
					sizeof(sealed), &slen) < 0) {
		fprintf(stderr, "flood: cannot build a packet\n");
		exit(2);
	}
	pace();
	if (sendto(fd, sealed, slen, 0, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
	    errno != ENOBUFS && errno != EAGAIN)
		perror("flood: sendto");
	packets++;
}

int main(int argc, char **argv)
{
	struct gossip_keyring *kr;
	unsigned long members, records;
	char host[64], *colon;

	if (argc < 6 || argc > 7 || strlen(argv[3]) >= sizeof(host)) {
		fprintf(stderr, "usage: flood KEYRING CLUSTER IP:PORT MEMBERS RECORDS [PPS]\n");
		return 2;
	}
	members = strtoul(argv[4], NULL, 10);
	records = strtoul(argv[5], NULL, 10);
	pps = argc == 7 ? strtoul(argv[6], NULL, 10) : 5000;
	if (!pps || sodium_init() < 0)
		return 2;
	strcpy(host, argv[3]);
	colon = strchr(host, ':');
	if (!colon)
		return 2;
	*colon = 0;
	memset(&dst, 0, sizeof(dst));
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1)
		return 2;
	randombytes_buf(self_id, sizeof(self_id));
	if (gossip_keyring_new(&kr) < 0 || gossip_keyring_load(kr, argv[1]) < 0 ||
	    gossip_crypto_new(kr, argv[2], self_id, 0, &cr) < 0) {
		fprintf(stderr, "flood: cannot load the keyring %s\n", argv[1]);
		return 2;
	}
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return 2;

	uint8_t ids[20][GOSSIP_ID_LEN];
	char names[20][24];
	for (unsigned long i = 0; i < members; i += 20) {
		struct gossip_msg m[20];
		unsigned n = 0;

		for (; n < 20 && i + n < members; n++) {
			unsigned long k = i + n;

			randombytes_buf(ids[n], GOSSIP_ID_LEN);
			snprintf(names[n], sizeof(names[n]), "bogus-%lu", k);
			memset(&m[n], 0, sizeof(m[n]));
			m[n].type = GOSSIP_MSG_ALIVE;
			m[n].id = ids[n];
			m[n].num = 1;
			m[n].name = (const uint8_t *)names[n];
			m[n].name_len = strlen(names[n]);
			m[n].addr.family = GOSSIP_AF_INET;
			m[n].addr.port = 9;
			m[n].addr.ip[0] = 127;
			m[n].addr.ip[1] = 77;
			m[n].addr.ip[2] = (uint8_t)(k >> 8);
			m[n].addr.ip[3] = (uint8_t)k;
		}
		send_packet(m, n);
	}
	unsigned long mpackets = packets;

	uint8_t owners[100][GOSSIP_ID_LEN], value[600];
	char keys[2][32];
	for (unsigned i = 0; i < 100; i++)
		randombytes_buf(owners[i], GOSSIP_ID_LEN);
	for (unsigned long i = 0; i < records; i += 2) {
		struct gossip_msg m[2];
		unsigned n = 0;

		for (; n < 2 && i + n < records; n++) {
			unsigned long k = i + n;
			int kl = snprintf(keys[n], sizeof(keys[n]), "flood/%lu", k);

			randombytes_buf(value, sizeof(value));
			memset(&m[n], 0, sizeof(m[n]));
			m[n].type = GOSSIP_MSG_RECORD;
			m[n].id = owners[k % 100];
			m[n].blob = (const uint8_t *)keys[n];
			m[n].blob_len = (size_t)kl;
			m[n].num = 1;
			m[n].value = value;
			m[n].value_len = sizeof(value);
		}
		send_packet(m, n);
	}
	printf("flood: %lu members in %lu packets, %lu records in %lu packets\n", members,
	       mpackets, records, packets - mpackets);
	gossip_crypto_free(cr);
	gossip_keyring_free(kr);
	close(fd);
	return 0;
}
