/*
 * plugins/plugin.c: the driver table and the generic plugin handle (see plugin.h).
 *
 * The handle is a thin shell around a driver: plugin_new() allocates it and calls the
 * driver's init, plugin_close() asks the driver to wind down (the driver cancels pending
 * operations with -ECANCELED) and frees the shell from the driver's close callback, then
 * calls the user's callback. Drivers keep their own state in p->priv.
 */
#include "plugins/plugin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *plugin_state_name(enum plugin_state s)
{
	switch (s) {
	case PLUGIN_STOPPED:
		return "stopped";
	case PLUGIN_STARTING:
		return "starting";
	case PLUGIN_RUNNING:
		return "running";
	case PLUGIN_FAILED:
		return "failed";
	case PLUGIN_RESTARTING:
		return "restarting";
	}
	return "unknown";
}

const struct plugin_ops *plugin_ops_by_name(const char *name)
{
	/* Add drivers here. Referencing each ops table also pulls its object file out of the
	 * static library, so every driver named here is linked into whatever uses this. */
	const struct plugin_ops *table[] = {
		&plugin_exec_ops,
		&plugin_systemd_ops,
		&plugin_container_ops,
	};

	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct plugin_ops *o = table[i];

		if (o->name && strcmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

bool plugin__valid_service(const char *service)
{
	size_t n;

	if (!service)
		return false;
	n = strlen(service);
	if (n == 0 || n > 64 || strcmp(service, ".") == 0 || strcmp(service, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = service[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

char *plugin__id_hex(const struct store_id *id, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < STORE_ID_LEN; i++) {
		out[2 * i] = hex[id->b[i] >> 4];
		out[2 * i + 1] = hex[id->b[i] & 15];
	}
	out[STORE_ID_HEXLEN] = '\0';
	return out;
}

void plugin__status_init(struct plugin_status *st)
{
	memset(st, 0, sizeof(*st));
	st->state = PLUGIN_STOPPED;
	st->exit_status = -1;
}

/* The handle plus what plugin_close needs, so that closing never allocates. */
struct plugin_shell {
	struct plugin p;	/* first: a struct plugin * is a struct plugin_shell * */
	plugin_close_cb close_cb;
	void *close_ud;
};

int plugin_new(uv_loop_t *loop, const struct plugin_ops *ops, const struct plugin_config *cfg,
	       struct plugin **ret)
{
	struct plugin_shell *sh;
	int r;

	if (!loop || !ops || !cfg || !ret || !ops->init || !ops->close)
		return -EINVAL;
	if (!cfg->state_dir || cfg->state_dir[0] != '/')
		return -EINVAL;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	sh->p.ops = ops;
	sh->p.loop = loop;
	sh->p.cfg = *cfg;
	r = ops->init(&sh->p);
	if (r < 0) {
		free(sh);
		return r;
	}
	*ret = &sh->p;
	return 0;
}

static void plugin_closed(struct plugin *p, void *ud)
{
	struct plugin_shell *sh = (struct plugin_shell *)p;

	(void)ud;
	/* the driver is gone; the shell goes right after the user's last look at it */
	if (sh->close_cb)
		sh->close_cb(p, sh->close_ud);
	free(sh);
}

const char *plugin_last_error(struct plugin *p, const char *service)
{
	const char *e;

	if (!p || !service || !p->ops->last_error)
		return "";
	e = p->ops->last_error(p, service);
	return e ? e : "";
}

void plugin_close(struct plugin *p, plugin_close_cb cb, void *ud)
{
	struct plugin_shell *sh = (struct plugin_shell *)p;

	if (!p)
		return;
	sh->close_cb = cb;
	sh->close_ud = ud;
	p->ops->close(p, plugin_closed, NULL);
}
