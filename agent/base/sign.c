/*
 * agent/base/sign.c: node identity keys (see sign.h for the trust model).
 */
#include "agent/base/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define MAGIC "shoal-node-key-v1\n"
#define FILE_LEN (sizeof MAGIC - 1 + 64 + 1)

void sign_key_from_seed(const uint8_t seed[32], struct sign_key *ret)
{
	crypto_sign_seed_keypair(ret->pk, ret->sk, seed);
}

void sign_key_random(struct sign_key *ret)
{
	uint8_t seed[32];
	randombytes_buf(seed, sizeof seed);
	sign_key_from_seed(seed, ret);
	sodium_memzero(seed, sizeof seed);
}

void sign_detached(const struct sign_key *k, const void *msg, size_t len,
		   uint8_t sig[SIGN_SIG_LEN])
{
	crypto_sign_detached(sig, NULL, msg, len, k->sk);
}

bool sign_verify(const uint8_t pk[SIGN_PUBLIC_LEN], const void *msg, size_t len,
		 const uint8_t sig[SIGN_SIG_LEN])
{
	static const uint8_t zero[SIGN_PUBLIC_LEN];
	if (!pk || !sig || sodium_memcmp(pk, zero, SIGN_PUBLIC_LEN) == 0)
		return false;
	return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int write_new(const char *path, struct sign_key *ret)
{
	char tmp[4096], buf[FILE_LEN];
	uint8_t seed[32];
	int fd, err = 0;

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	randombytes_buf(seed, sizeof seed);
	memcpy(buf, MAGIC, sizeof MAGIC - 1);
	for (int i = 0; i < 32; i++)
		snprintf(buf + sizeof MAGIC - 1 + 2 * i, 3, "%02x", seed[i]);
	buf[FILE_LEN - 1] = '\n';
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fsync(fd) < 0) {
		err = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		err = -errno;
		unlink(tmp);
		goto out;
	}
	sign_key_from_seed(seed, ret);
out:
	sodium_memzero(seed, sizeof seed);
	sodium_memzero(buf, sizeof buf);
	return err;
}

int sign_node_key_load(const char *path, struct sign_key *ret, bool *ret_created)
{
	char buf[FILE_LEN + 1];
	uint8_t seed[32];
	struct stat st;
	int fd, err = 0;
	ssize_t n;

	if (!path || !ret)
		return -EINVAL;
	if (ret_created)
		*ret_created = false;
	if (sodium_init() < 0)
		return -EIO;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		err = write_new(path, ret);
		if (err == 0 && ret_created)
			*ret_created = true;
		return err;
	}
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -SIGN_EFORMAT;
		goto out;
	}
	if (st.st_mode & 077) {
		err = -SIGN_EMODE;
		goto out;
	}
	n = read(fd, buf, sizeof buf);
	if (n < 0) {
		err = -errno;
		goto out;
	}
	if ((size_t)n != FILE_LEN || memcmp(buf, MAGIC, sizeof MAGIC - 1) != 0 ||
	    buf[FILE_LEN - 1] != '\n') {
		err = -SIGN_EFORMAT;
		goto out;
	}
	for (int i = 0; i < 32; i++) {
		int hi = hexval(buf[sizeof MAGIC - 1 + 2 * i]);
		int lo = hexval(buf[sizeof MAGIC - 1 + 2 * i + 1]);
		if (hi < 0 || lo < 0) {
			err = -SIGN_EFORMAT;
			goto out;
		}
		seed[i] = (uint8_t)(hi << 4 | lo);
	}
	sign_key_from_seed(seed, ret);
out:
	sodium_memzero(seed, sizeof seed);
	sodium_memzero(buf, sizeof buf);
	close(fd);
	return err;
}

const char *sign_strerror(int err)
{
	switch (-err) {
	case SIGN_EMODE:
		return "key file is readable by group or others (chmod 600 it)";
	case SIGN_EFORMAT:
		return "not a Shoal key file";
	default:
		return strerror(-err);
	}
}
