/*
 * agent/daemon/metrics.c: the Prometheus endpoint (see agent/daemon/metrics.h).
 *
 * Each connection (agent/daemon/http_serve.h does the socket side: accept, limits, timers,
 * reading the head, writing, closing): render the loop-side figures -> threadpool:
 * store_stats (the connection is held meanwhile) -> answer.
 */
#include "agent/daemon/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/daemon/agent.h"
#include "agent/cluster/cluster.h"
#include "agent/cluster/fetch.h"
#include "agent/daemon/hook.h"
#include "agent/daemon/http_serve.h"
#include "agent/fleet/fleet.h"
#include "agent/base/log.h"
#include "agent/base/sign.h"
#include "gossip/transport.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

/* Each connection's state (http_conn_data). */
struct mconn {
	struct metrics *m;
	uv_work_t work;
	char *body;		/* loop part, then the store part appended by the worker */
	size_t body_len, body_cap;
	int status;
};

struct metrics {
	struct agent *a;
	uv_loop_t *loop;
	struct http_serve *srv;
	void (*cb)(void *ud);
	void *ud;
	uint64_t requests;
};

/* ---- text buffer -------------------------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		while (ncap - b->len <= (size_t)n)
			ncap *= 2;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static void metric(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- process, fleet, fetch, hook ------------------------------------------------------------ */

/* Label values are service names ([A-Za-z0-9._-]) and fixed words: nothing to escape. */

/* The standard process collector's metrics (Prometheus client libraries' names and units). */
static void render_process(struct sbuf *b, struct agent *a)
{
	struct rusage ru;
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long vsz = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%llu %llu", &vsz, &rss) != 2)
			vsz = rss = 0;
		fclose(f);
	}
	metric(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	sb_printf(b, "process_resident_memory_bytes %llu\n", rss * (unsigned long long)page);
	metric(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	sb_printf(b, "process_virtual_memory_bytes %llu\n", vsz * (unsigned long long)page);
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		metric(b, "process_cpu_seconds_total", "counter",
		       "Total user and system CPU time spent in seconds.");
		sb_printf(b, "process_cpu_seconds_total %.6f\n",
			  (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
				  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		long n = 0;
		struct dirent *e;
		while ((e = readdir(d)))
			n += e->d_name[0] != '.';
		closedir(d);
		metric(b, "process_open_fds", "gauge", "Number of open file descriptors.");
		sb_printf(b, "process_open_fds %ld\n", n - 1);	/* not the DIR's own */
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		metric(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
		sb_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
	metric(b, "process_start_time_seconds", "gauge",
	       "Start time of the process since unix epoch in seconds.");
	sb_printf(b, "process_start_time_seconds %.3f\n", (double)a->start_wall_ms / 1000.0);
}

/* Each family needs all its series together: one pass over the services per family. */
enum svc_family { F_DESIRED, F_RUNNING, F_HEALTHY, F_NODES_HEALTHY, F_NODES_REPORTING,
		  F_ROLLBACKS, F_VOTES, F_SWAPS, F_SWAP_HIST, F__COUNT };

struct svc_pass {
	struct sbuf *b;
	enum svc_family f;
};

static int svc_cb(void *ud, const struct fleet_service_stats *s)
{
	struct svc_pass *p = ud;
	struct sbuf *b = p->b;
	const struct fleet_svc_counts *c = s->counts;
	const char *n = s->service;
	switch (p->f) {
	case F_DESIRED:
		sb_printf(b, "shoal_service_desired_revision{service=\"%s\"} %" PRIu64 "\n", n,
			  s->desired_rev);
		break;
	case F_RUNNING:
		sb_printf(b, "shoal_service_running_revision{service=\"%s\"} %" PRIu64 "\n", n,
			  s->running_rev);
		break;
	case F_HEALTHY:
		sb_printf(b, "shoal_service_healthy{service=\"%s\"} %d\n", n, s->healthy);
		break;
	case F_NODES_HEALTHY:
		sb_printf(b, "shoal_service_nodes_healthy{service=\"%s\"} %" PRIu32 "\n", n,
			  s->nodes_healthy);
		break;
	case F_NODES_REPORTING:
		sb_printf(b, "shoal_service_nodes_reporting{service=\"%s\"} %" PRIu32 "\n", n,
			  s->nodes_reporting);
		break;
	case F_ROLLBACKS:
		for (int r = 0; r < FLEET_ROLLBACK__COUNT; r++)
			sb_printf(b, "shoal_rollbacks_total{service=\"%s\",reason=\"%s\"} %" PRIu64
				  "\n", n, fleet_rollback_reason_name(r), c->rollbacks[r]);
		break;
	case F_VOTES:
		sb_printf(b, "shoal_votes_cast_total{service=\"%s\",reason=\"health\"} %" PRIu64
			  "\n", n, c->votes[0]);
		sb_printf(b, "shoal_votes_cast_total{service=\"%s\",reason=\"operator\"} %"
			  PRIu64 "\n", n, c->votes[1]);
		break;
	case F_SWAPS:
		sb_printf(b, "shoal_swaps_total{service=\"%s\",result=\"ok\"} %" PRIu64 "\n", n,
			  c->swaps_ok);
		sb_printf(b, "shoal_swaps_total{service=\"%s\",result=\"failed\"} %" PRIu64
			  "\n", n, c->swaps_failed);
		break;
	case F_SWAP_HIST: {
		uint64_t cum = 0;
		for (int i = 0; i < FLEET_SWAP_BUCKETS; i++) {
			cum += c->swap_hist[i];
			sb_printf(b, "shoal_swap_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %"
				  PRIu64 "\n", n, fleet_swap_buckets[i], cum);
		}
		cum += c->swap_hist[FLEET_SWAP_BUCKETS];
		sb_printf(b, "shoal_swap_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %"
			  PRIu64 "\n", n, cum);
		sb_printf(b, "shoal_swap_duration_seconds_sum{service=\"%s\"} %.3f\n", n,
			  (double)c->swap_ms_sum / 1000.0);
		sb_printf(b, "shoal_swap_duration_seconds_count{service=\"%s\"} %" PRIu64 "\n", n,
			  cum);
		break;
	}
	case F__COUNT:
		break;
	}
	return 0;
}

static void render_fleet(struct sbuf *b, struct agent *a)
{
	static const struct {
		const char *name, *type, *help;
	} fam[F__COUNT] = {
		[F_DESIRED] = {"shoal_service_desired_revision", "gauge",
			       "Revision of the service this node should run (0: none)."},
		[F_RUNNING] = {"shoal_service_running_revision", "gauge",
			       "Revision of the service this node runs (0: none)."},
		[F_HEALTHY] = {"shoal_service_healthy", "gauge",
			       "1 if the service passes its health checks on this node."},
		[F_NODES_HEALTHY] = {"shoal_service_nodes_healthy", "gauge",
				     "Nodes (this one included) where the service is healthy, as "
				     "this node sees the cluster."},
		[F_NODES_REPORTING] = {"shoal_service_nodes_reporting", "gauge",
				       "Nodes (this one included) reporting the service's health."},
		[F_ROLLBACKS] = {"shoal_rollbacks_total", "counter",
				 "Rollbacks this node learned were decided, by reason (health "
				 "votes, an operator's vote, or a local rollback here)."},
		[F_VOTES] = {"shoal_votes_cast_total", "counter",
			     "Votes this node cast against a revision, by reason."},
		[F_SWAPS] = {"shoal_swaps_total", "counter",
			     "Swap attempts that ended, by result (a failed one is retried)."},
		[F_SWAP_HIST] = {"shoal_swap_duration_seconds", "histogram",
				 "Duration of successful swaps, from the first attempt's start."},
	};
	if (!a->fleet)
		return;
	for (int f = 0; f < F__COUNT; f++) {
		struct svc_pass p = {.b = b, .f = (enum svc_family)f};
		metric(b, fam[f].name, fam[f].type, fam[f].help);
		fleet_service_stats_foreach(a->fleet, svc_cb, &p);
	}
}

static void render_fetch_hook(struct sbuf *b, struct agent *a)
{
	if (a->fetch) {
		struct fetch_stats fs;
		fetch_get_stats(a->fetch, &fs);
		metric(b, "shoal_fetches_total", "counter",
		       "Artifact fetches from peers that ended, by result.");
		sb_printf(b, "shoal_fetches_total{result=\"ok\"} %" PRIu64 "\n", fs.ok);
		sb_printf(b, "shoal_fetches_total{result=\"failed\"} %" PRIu64 "\n", fs.failed);
		metric(b, "shoal_fetches_in_progress", "gauge", "Artifact fetches under way.");
		sb_printf(b, "shoal_fetches_in_progress %" PRIu64 "\n",
			  fs.started >= fs.ok + fs.failed ? fs.started - fs.ok - fs.failed : 0);
		metric(b, "shoal_fetch_bytes_total", "counter",
		       "Artifact bytes fetched: verified from peers, or copied from blobs held.");
		sb_printf(b, "shoal_fetch_bytes_total{source=\"peer\"} %" PRIu64 "\n", fs.bytes_in);
		sb_printf(b, "shoal_fetch_bytes_total{source=\"local\"} %" PRIu64 "\n",
			  fs.bytes_local);
		metric(b, "shoal_fetch_served_bytes_total", "counter",
		       "Artifact bytes served to peers.");
		sb_printf(b, "shoal_fetch_served_bytes_total %" PRIu64 "\n", fs.served_bytes);
		metric(b, "shoal_fetch_busy_total", "counter",
		       "Chunk requests answered busy (upload slots taken), by side.");
		sb_printf(b, "shoal_fetch_busy_total{side=\"served\"} %" PRIu64 "\n",
			  fs.served_busy);
		sb_printf(b, "shoal_fetch_busy_total{side=\"asked\"} %" PRIu64 "\n", fs.busy);
	}
	if (a->hook) {
		struct hook_stats hs;
		hook_stats(a->hook, &hs);
		metric(b, "shoal_event_hook_runs_total", "counter",
		       "Event hook runs that ended, by result.");
		sb_printf(b, "shoal_event_hook_runs_total{result=\"ok\"} %" PRIu64 "\n", hs.ok);
		sb_printf(b, "shoal_event_hook_runs_total{result=\"failed\"} %" PRIu64 "\n",
			  hs.failed);
		sb_printf(b, "shoal_event_hook_runs_total{result=\"timeout\"} %" PRIu64 "\n",
			  hs.timeout);
		sb_printf(b, "shoal_event_hook_runs_total{result=\"spawn_error\"} %" PRIu64 "\n",
			  hs.spawn_errors);
		metric(b, "shoal_event_hook_dropped_total", "counter",
		       "Events not given to the hook: its queue was full.");
		sb_printf(b, "shoal_event_hook_dropped_total %" PRIu64 "\n", hs.dropped);
		metric(b, "shoal_event_hook_running", "gauge", "Event hooks running now.");
		sb_printf(b, "shoal_event_hook_running %u\n", hs.running);
		metric(b, "shoal_event_hook_queued", "gauge", "Events waiting for a hook slot.");
		sb_printf(b, "shoal_event_hook_queued %u\n", hs.queued);
	}
}

char *metrics_render(struct agent *a)
{
	struct sbuf b = {0};
	sb_printf(&b, "%s", "");
	metric(&b, "shoal_build_info", "gauge", "Always 1; the labels say which agent this is.");
	sb_printf(&b, "shoal_build_info{version=\"%s\"} 1\n", SHOAL_VERSION);
	metric(&b, "shoal_up", "gauge", "1 while the agent serves.");
	sb_printf(&b, "shoal_up 1\n");
	metric(&b, "shoal_uptime_seconds", "gauge", "Seconds since the agent started.");
	sb_printf(&b, "shoal_uptime_seconds %.3f\n", (double)(uv_hrtime() - a->start_ns) / 1e9);
	metric(&b, "shoal_ctl_clients", "gauge", "Clients connected to the control socket.");
	sb_printf(&b, "shoal_ctl_clients %u\n", a->ctl ? ctl_server_clients(a->ctl) : 0);
	metric(&b, "shoal_ctl_busy", "gauge", "Control operations running on the threadpool.");
	sb_printf(&b, "shoal_ctl_busy %u\n", a->ctl ? ctl_server_busy(a->ctl) : 0);
	{
		uint64_t checked, remembered;
		sign_verify_stats(&checked, &remembered);
		metric(&b, "shoal_signature_checks_total", "counter",
		       "Ed25519 signatures this node verified (computed), or answered from the "
		       "verdicts it remembers.");
		sb_printf(&b, "shoal_signature_checks_total{result=\"computed\"} %" PRIu64 "\n",
			  checked);
		sb_printf(&b, "shoal_signature_checks_total{result=\"remembered\"} %" PRIu64 "\n",
			  remembered);
		metric(&b, "shoal_signed_records_refused_total", "counter",
		       "Records refused for their signatures: forged in another node's name, "
		       "unsigned, replayed older, or not signed by a trusted operator key.");
		sb_printf(&b, "shoal_signed_records_refused_total %" PRIu64 "\n",
			  fleet_sig_refused(a->fleet));
	}

	if (a->cluster && cluster_transport(a->cluster)) {
		struct gossip_transport *t = cluster_transport(a->cluster);
		struct gossip *g = gossip_transport_core(t);
		struct gossip_transport_stats ts;
		struct gossip_stats gs;
		struct cluster_summary cs;
		gossip_transport_stats(t, &ts);
		gossip_stats(g, &gs);
		cluster_summary(a->cluster, &cs);
		metric(&b, "shoal_gossip_members", "gauge",
		       "Members of the cluster by state, this node included.");
		for (int s = 0; s < 4; s++)
			sb_printf(&b, "shoal_gossip_members{state=\"%s\"} %zu\n",
				  gossip_state_name(s),
				  gossip_member_count(g, s));
		metric(&b, "shoal_gossip_incarnation", "gauge", "This node's incarnation number.");
		sb_printf(&b, "shoal_gossip_incarnation %" PRIu64 "\n",
			  gossip_self(g)->incarnation);
		metric(&b, "shoal_gossip_records", "gauge", "Application records held.");
		sb_printf(&b, "shoal_gossip_records %zu\n", gossip_record_count(g));
		metric(&b, "shoal_gossip_packets_total", "counter", "UDP datagrams.");
		sb_printf(&b, "shoal_gossip_packets_total{direction=\"in\"} %" PRIu64 "\n",
			  ts.packets_in);
		sb_printf(&b, "shoal_gossip_packets_total{direction=\"out\"} %" PRIu64 "\n",
			  ts.packets_out);
		metric(&b, "shoal_gossip_bytes_total", "counter", "UDP bytes (sealed sizes).");
		sb_printf(&b, "shoal_gossip_bytes_total{direction=\"in\"} %" PRIu64 "\n",
			  ts.bytes_in);
		sb_printf(&b, "shoal_gossip_bytes_total{direction=\"out\"} %" PRIu64 "\n",
			  ts.bytes_out);
		metric(&b, "shoal_gossip_stream_bytes_total", "counter",
		       "Anti-entropy TCP bytes (frames with their prefix).");
		sb_printf(&b, "shoal_gossip_stream_bytes_total{direction=\"in\"} %" PRIu64 "\n",
			  ts.stream_bytes_in);
		sb_printf(&b, "shoal_gossip_stream_bytes_total{direction=\"out\"} %" PRIu64 "\n",
			  ts.stream_bytes_out);
		metric(&b, "shoal_gossip_dropped_total", "counter",
		       "Packets and frames that failed to open, by reason (never parsed).");
		for (int i = 0; i < GOSSIP_DROP_MAX; i++)
			sb_printf(&b, "shoal_gossip_dropped_total{reason=\"%s\"} %" PRIu64 "\n",
				  gossip_drop_name((enum gossip_drop)i), ts.drops[i]);
		metric(&b, "shoal_gossip_malformed_total", "counter",
		       "Authentic packets the protocol core refused.");
		sb_printf(&b, "shoal_gossip_malformed_total %" PRIu64 "\n", ts.malformed);
		metric(&b, "shoal_gossip_send_errors_total", "counter", "Datagrams not sent.");
		sb_printf(&b, "shoal_gossip_send_errors_total %" PRIu64 "\n", ts.send_errors);
		metric(&b, "shoal_gossip_sync_total", "counter",
		       "Anti-entropy exchanges by result.");
		sb_printf(&b, "shoal_gossip_sync_total{result=\"ok\"} %" PRIu64 "\n", ts.sync_ok);
		sb_printf(&b, "shoal_gossip_sync_total{result=\"failed\"} %" PRIu64 "\n",
			  ts.sync_failed);
		sb_printf(&b, "shoal_gossip_sync_total{result=\"refused\"} %" PRIu64 "\n",
			  ts.sync_refused);
		metric(&b, "shoal_gossip_probes_failed_total", "counter",
		       "Probes that got no ack, direct or indirect.");
		sb_printf(&b, "shoal_gossip_probes_failed_total %" PRIu64 "\n", gs.probes_failed);
		metric(&b, "shoal_gossip_suspicions_total", "counter", "Suspicions raised.");
		sb_printf(&b, "shoal_gossip_suspicions_total %" PRIu64 "\n", gs.suspicions);
		metric(&b, "shoal_gossip_refutes_total", "counter",
		       "Suspicions about this node refuted.");
		sb_printf(&b, "shoal_gossip_refutes_total %" PRIu64 "\n", gs.refutes);
		metric(&b, "shoal_gossip_deaths_declared_total", "counter",
		       "Members this node declared dead.");
		sb_printf(&b, "shoal_gossip_deaths_declared_total %" PRIu64 "\n",
			  gs.deaths_declared);
		metric(&b, "shoal_gossip_health_awareness", "gauge",
		       "Lifeguard local health multiplier score (0 = healthy).");
		sb_printf(&b, "shoal_gossip_health_awareness %u\n", gs.awareness);
		/* bounds against outsiders and floods (gossip/transport.h, gossip/gossip.h) */
		metric(&b, "shoal_gossip_unproven_streams_total", "counter",
		       "Inbound TCP connections that never proved the key, by fate.");
		sb_printf(&b, "shoal_gossip_unproven_streams_total{fate=\"timed_out\"} %" PRIu64
			  "\n", ts.stream_unproven_closed);
		sb_printf(&b, "shoal_gossip_unproven_streams_total{fate=\"refused\"} %" PRIu64
			  "\n", ts.stream_unproven_refused);
		metric(&b, "shoal_gossip_table_drops_total", "counter",
		       "New members and records refused at the table bounds.");
		sb_printf(&b, "shoal_gossip_table_drops_total{kind=\"member\"} %" PRIu64 "\n",
			  gs.members_dropped);
		sb_printf(&b, "shoal_gossip_table_drops_total{kind=\"record\"} %" PRIu64 "\n",
			  gs.records_dropped);
		metric(&b, "shoal_gossip_records_future_total", "counter",
		       "Records refused for a version more than 30 days ahead of this clock "
		       "(forged, or a writer whose clock is far ahead).");
		sb_printf(&b, "shoal_gossip_records_future_total %" PRIu64 "\n", gs.records_future);
		metric(&b, "shoal_gossip_flood_cover_probes_total", "counter",
		       "Probes moved off never-heard members to heard ones.");
		sb_printf(&b, "shoal_gossip_flood_cover_probes_total %" PRIu64 "\n",
			  gs.flood_cover_probes);
		metric(&b, "shoal_gossip_keys", "gauge", "Keys in the cluster keyring.");
		sb_printf(&b, "shoal_gossip_keys %u\n", cs.keys);
		metric(&b, "shoal_cluster_persist_errors_total", "counter",
		       "Member/record writes to the store that failed.");
		sb_printf(&b, "shoal_cluster_persist_errors_total %" PRIu64 "\n",
			  cs.persist_errors);
	}
	render_process(&b, a);
	render_fleet(&b, a);
	render_fetch_hook(&b, a);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* ---- connections (http_serve.h) ------------------------------------------------------------ */

static void respond(struct http_conn *c, int code, const char *reason, const char *ctype,
		    const char *body, size_t blen)
{
	http_conn_respond(c, code, reason, ctype, NULL, body, blen);
}

static void store_work(uv_work_t *w)
{
	/* a worker thread: only the connection's own data, never the connection */
	struct mconn *c = (struct mconn *)(void *)((char *)w - offsetof(struct mconn, work));
	struct store_stats st;
	struct sbuf b = {.p = c->body, .len = c->body_len, .cap = c->body_cap};
	if (store_stats(c->m->a->store, &st) == 0) {
		metric(&b, "shoal_store_map_size_bytes", "gauge", "LMDB map size.");
		sb_printf(&b, "shoal_store_map_size_bytes %" PRIu64 "\n", st.map_size);
		metric(&b, "shoal_store_map_used_bytes", "gauge", "LMDB map bytes in use.");
		sb_printf(&b, "shoal_store_map_used_bytes %" PRIu64 "\n", st.map_used);
		metric(&b, "shoal_store_artifacts", "gauge", "Artifacts held.");
		sb_printf(&b, "shoal_store_artifacts %" PRIu64 "\n", st.nartifacts);
		metric(&b, "shoal_store_blobs", "gauge", "Content-addressed blobs held.");
		sb_printf(&b, "shoal_store_blobs %" PRIu64 "\n", st.nblobs);
		metric(&b, "shoal_store_chunks", "gauge", "Blob chunks held.");
		sb_printf(&b, "shoal_store_chunks %" PRIu64 "\n", st.nchunks);
		metric(&b, "shoal_store_chunk_bytes", "gauge", "Bytes in blob chunks.");
		sb_printf(&b, "shoal_store_chunk_bytes %" PRIu64 "\n", st.chunk_bytes);
	}
	c->body = b.p;
	c->body_len = b.len;
	c->body_cap = b.cap;
	c->status = b.oom ? -ENOMEM : 0;
}

static void store_done(uv_work_t *w, int status)
{
	struct http_conn *hc = w->data;	/* set when queued */
	struct mconn *c = http_conn_data(hc);
	(void)status;
	if (!http_conn_release(hc))
		return;		/* closed meanwhile (the endpoint is closing, or a timeout) */
	if (c->status < 0 || !c->body) {
		respond(hc, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
		return;
	}
	respond(hc, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", c->body, c->body_len);
}

static size_t head_len(const char *buf, size_t len)
{
	(void)len;	/* buf is NUL-terminated */
	return strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n") ? len : 0;
}

static void on_request(struct http_conn *hc, const char *head, size_t len, void *ud)
{
	struct metrics *m = ud;
	struct mconn *c = http_conn_data(hc);
	char method[16], target[1024];
	(void)len;
	c->m = m;
	m->requests++;
	if (sscanf(head, "%15s %1023s HTTP/1.", method, target) != 2) {
		respond(hc, 400, "Bad Request", "text/plain", "bad request\n", 12);
		return;
	}
	char *q = strchr(target, '?');
	if (q)
		*q = 0;
	if (strcmp(target, "/metrics") != 0) {
		respond(hc, 404, "Not Found", "text/plain", "not found: try /metrics\n", 24);
		return;
	}
	if (strcmp(method, "GET") != 0) {
		respond(hc, 405, "Method Not Allowed", "text/plain", "GET only\n", 9);
		return;
	}
	c->body = metrics_render(m->a);
	if (!c->body) {
		respond(hc, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
		return;
	}
	c->body_len = c->body_cap = strlen(c->body);
	c->body_cap++;
	c->work.data = hc;
	http_conn_hold(hc);
	if (uv_queue_work(m->loop, &c->work, store_work, store_done) < 0) {
		http_conn_release(hc);	/* still open: nothing closed it in between */
		respond(hc, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", c->body,
			c->body_len);
	}
}

static void on_overflow(struct http_conn *hc, void *ud)
{
	(void)ud;
	respond(hc, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10);
}

static void on_free(struct http_conn *hc, void *ud)
{
	struct mconn *c = http_conn_data(hc);
	(void)ud;
	free(c->body);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int metrics_new(uv_loop_t *loop, struct agent *a, const char *addr, struct metrics **ret,
		char *err, size_t errlen)
{
	struct metrics *m = calloc(1, sizeof *m);
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->loop = loop;
	m->a = a;
	struct http_serve_config cfg = {
		.flag = "--metrics",
		.head_max = METRICS_REQUEST_MAX - 1,
		.timeout_ms = METRICS_TIMEOUT_MS,
		.clients = METRICS_CLIENTS,
		.backlog = 64,
		.conn_size = sizeof(struct mconn),
		.head_len = head_len,
		.on_request = on_request,
		.on_overflow = on_overflow,
		.on_free = on_free,
		.ud = m,
	};
	int r = http_serve_new(loop, addr, &cfg, &m->srv, err, errlen);
	if (r < 0) {
		free(m);
		return r;
	}
	log_notice("metrics: serving http://%s/metrics", addr);
	*ret = m;
	return 0;
}

static void srv_closed(void *ud)
{
	struct metrics *m = ud;
	void (*cb)(void *) = m->cb;
	void *cud = m->ud;
	free(m);
	if (cb)
		cb(cud);
}

void metrics_close(struct metrics *m, void (*cb)(void *ud), void *ud)
{
	if (!m || !m->srv)
		return;
	struct http_serve *srv = m->srv;
	m->srv = NULL;	/* a second call is a no-op */
	m->cb = cb;
	m->ud = ud;
	http_serve_close(srv, srv_closed, m);
}
