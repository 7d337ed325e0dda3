/*
 * admin.c - the worker's internal port: /healthz (the process runs),
 * /readyz (Redis and Postgres reachable, not draining: 503 with the reason
 * otherwise) and /metrics (Prometheus text). libevent's own small HTTP
 * server is enough for three read-only endpoints.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "wk.h"

static void reply(struct evhttp_request *req, int code, const char *type, const char *body)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, body, strlen(body));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Service Unavailable", b);
	evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (!path || evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "GET only");
	} else if (strcmp(path, "/healthz") == 0) {
		reply(req, 200, "text/plain", "ok\n");
	} else if (strcmp(path, "/readyz") == 0) {
		const char *why = wk.draining              ? "draining\n"
		                  : !redis_conn_up(wk.rc)  ? "redis unavailable\n"
		                  : !redis_conn_up(wk.blk) ? "redis unavailable\n"
		                  : !pg_conn_up(wk.pg)     ? "database unavailable\n"
		                  : wk.m.batch_failures && wk.retry_at > wk_now()
		                      ? "retrying a batch\n"
		                      : NULL;
		reply(req, why ? 503 : 200, "text/plain", why ? why : "ready\n");
	} else if (strcmp(path, "/metrics") == 0) {
		char body[2048];
		snprintf(
		    body, sizeof(body),
		    "# TYPE tidings_worker_shards_owned gauge\ntidings_worker_shards_owned %d\n"
		    "# TYPE tidings_worker_entries_total counter\ntidings_worker_entries_total "
		    "%llu\n"
		    "# TYPE tidings_worker_batches_total counter\ntidings_worker_batches_total "
		    "%llu\n"
		    "# TYPE tidings_worker_batch_failures_total counter\n"
		    "tidings_worker_batch_failures_total %llu\n"
		    "# TYPE tidings_worker_effects_total counter\ntidings_worker_effects_total "
		    "%llu\n"
		    "# TYPE tidings_worker_refused_total counter\ntidings_worker_refused_total "
		    "%llu\n"
		    "# TYPE tidings_worker_malformed_total counter\n"
		    "tidings_worker_malformed_total %llu\n"
		    "# TYPE tidings_worker_deliveries_total counter\n"
		    "tidings_worker_deliveries_total %llu\n"
		    "# TYPE tidings_worker_redis_up gauge\ntidings_worker_redis_up %d\n"
		    "# TYPE tidings_worker_database_up gauge\ntidings_worker_database_up %d\n",
		    wk.owned, (unsigned long long)wk.m.entries, (unsigned long long)wk.m.batches,
		    (unsigned long long)wk.m.batch_failures, (unsigned long long)wk.m.effects,
		    (unsigned long long)wk.m.refused, (unsigned long long)wk.m.malformed,
		    (unsigned long long)wk.m.deliveries, redis_conn_up(wk.rc), pg_conn_up(wk.pg));
		reply(req, 200, "text/plain; version=0.0.4", body);
	} else {
		evhttp_send_error(req, 404, "not found");
	}
}

void admin_start(void)
{
	const char *addr = wk.cfg.admin_listen;
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	if (!addr || !*addr)
		return;
	char host[128];
	if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
		log_warn("admin-listen '%s' is not host:port: internal port off", addr);
		return;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct evhttp *http = evhttp_new(wk.base);
	evhttp_set_gencb(http, on_request, NULL);
	/* Not fatal: several workers on one host share a default port. */
	if (evhttp_bind_socket(http, host, (unsigned short)atoi(colon + 1)) < 0) {
		log_warn("cannot listen on %s for /healthz, /readyz, /metrics: internal port off",
		         addr);
		evhttp_free(http);
		return;
	}
	log_info("internal port %s: /healthz /readyz /metrics", addr);
}
