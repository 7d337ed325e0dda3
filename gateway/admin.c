#include "admin.h"

#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "common/buf.h"
#include "eio_sock.h"
#include "call.h"
#include "emit.h"
#include "gw.h"
#include "sio_sock.h"

static const char *const hs_reasons[] = {"origin",   "bad_request",    "unknown_sid", "transport",
                                         "too_many", "header_timeout", "too_large",   "auth"};
static const char *const sio_types[] = {"connect",       "disconnect",   "event",     "ack",
                                        "connect_error", "binary_event", "binary_ack"};

static void metrics(conn *c)
{
	buf b;
	buf_init(&b, 0);
	const gw_metrics *m = &gw.m;
	buf_appendf(&b, "# HELP tidings_connections Open connections by transport.\n"
	                "# TYPE tidings_connections gauge\n");
	buf_appendf(&b, "tidings_connections{transport=\"websocket\"} %llu\n",
	            (unsigned long long)m->conns_ws);
	buf_appendf(&b, "tidings_connections{transport=\"polling\"} %llu\n",
	            (unsigned long long)m->conns_polling);
	buf_appendf(&b, "tidings_connections{transport=\"http\"} %llu\n",
	            (unsigned long long)m->conns_http);
	buf_appendf(&b, "# TYPE tidings_engineio_sessions gauge\ntidings_engineio_sessions %llu\n",
	            (unsigned long long)eio_count);
	buf_appendf(&b, "# TYPE tidings_sockets gauge\ntidings_sockets %llu\n",
	            (unsigned long long)sio_count);
	buf_appendf(&b, "# TYPE tidings_accepted_total counter\ntidings_accepted_total %llu\n",
	            (unsigned long long)m->accepted);
	buf_appendf(&b, "# HELP tidings_handshake_failures_total Refused handshakes by reason.\n"
	                "# TYPE tidings_handshake_failures_total counter\n");
	for (int i = 0; i < 8; i++)
		buf_appendf(&b, "tidings_handshake_failures_total{reason=\"%s\"} %llu\n",
		            hs_reasons[i], (unsigned long long)m->handshake_fail[i]);
	buf_appendf(&b, "# HELP tidings_packets_total Socket.IO packets by direction and type.\n"
	                "# TYPE tidings_packets_total counter\n");
	for (int i = 0; i < 7; i++) {
		buf_appendf(&b, "tidings_packets_total{dir=\"in\",type=\"%s\"} %llu\n",
		            sio_types[i], (unsigned long long)m->pkts_in[i]);
		buf_appendf(&b, "tidings_packets_total{dir=\"out\",type=\"%s\"} %llu\n",
		            sio_types[i], (unsigned long long)m->pkts_out[i]);
	}
	buf_appendf(&b,
	            "# TYPE tidings_engineio_packets_total counter\n"
	            "tidings_engineio_packets_total{dir=\"in\"} %llu\n"
	            "tidings_engineio_packets_total{dir=\"out\"} %llu\n",
	            (unsigned long long)m->eio_in, (unsigned long long)m->eio_out);
	buf_appendf(&b, "# TYPE tidings_deliveries_total counter\ntidings_deliveries_total %llu\n",
	            (unsigned long long)m->deliveries);
	buf_appendf(&b,
	            "# TYPE tidings_delivery_entries_total counter\n"
	            "tidings_delivery_entries_total %llu\n",
	            (unsigned long long)m->delivery_entries);
	buf_appendf(&b,
	            "# TYPE tidings_ingress_entries_total counter\n"
	            "tidings_ingress_entries_total %llu\n",
	            (unsigned long long)m->ingress_entries);
	buf_appendf(
	    &b, "# TYPE tidings_ingress_errors_total counter\ntidings_ingress_errors_total %llu\n",
	    (unsigned long long)m->ingress_errors);
	buf_appendf(&b,
	            "# TYPE tidings_slow_consumers_total counter\n"
	            "tidings_slow_consumers_total %llu\n",
	            (unsigned long long)m->slow_consumers);
	buf_appendf(&b, "# TYPE tidings_bad_input_total counter\ntidings_bad_input_total %llu\n",
	            (unsigned long long)m->closed_bad_input);
	buf_appendf(
	    &b,
	    "# HELP tidings_token_repeats_total user-join events repeating the token their "
	    "socket authenticated with (not checked again).\n"
	    "# TYPE tidings_token_repeats_total counter\ntidings_token_repeats_total %llu\n",
	    (unsigned long long)m->token_repeats);
	buf_appendf(&b, "# TYPE tidings_redis_up gauge\ntidings_redis_up %d\n", bus_ready());
	httpd_respond(c, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
	buf_dispose(&b);
}

void admin_route(conn *c, const http_request *req, slice body)
{
	if (slice_eq_cstr(req->path, "/api/v1/emit")) {
		if (slice_eq_cstr(req->method, "POST"))
			emit_route(c, req, body);
		else
			httpd_error(c, 405, "POST only");
		return;
	}
	if (slice_eq_cstr(req->path, "/api/v1/call")) {
		if (slice_eq_cstr(req->method, "POST"))
			call_route(c, req, body);
		else
			httpd_error(c, 405, "POST only");
		return;
	}
	if (!slice_eq_cstr(req->method, "GET")) {
		httpd_error(c, 405, "method not allowed");
	} else if (slice_eq_cstr(req->path, "/healthz")) {
		httpd_respond(c, 200, "text/plain", NULL, "ok\n", 3);
	} else if (slice_eq_cstr(req->path, "/readyz")) {
		if (gw.draining)
			httpd_respond(c, 503, "text/plain", NULL, "draining\n", 9);
		else if (!bus_ready())
			httpd_respond(c, 503, "text/plain", NULL, "redis unavailable\n", 18);
		else
			httpd_respond(c, 200, "text/plain", NULL, "ready\n", 6);
	} else if (slice_eq_cstr(req->path, "/metrics")) {
		metrics(c);
	} else {
		httpd_error(c, 404, "not found");
	}
}
