#include "conformance.h"

#include "gw.h"

static void echo_open(eio_sock *e)
{
}

static void echo_message(eio_sock *e, slice data, int binary)
{
	eio_send(e, data, binary);
}

static void echo_close(eio_sock *e, const char *reason)
{
}

const eio_handler conformance_eio_echo = {echo_open, echo_message, echo_close, NULL};

static void ws_echo_message(ws *w, int opcode, slice payload)
{
	ws_send(w, opcode, payload);
}

static void ws_echo_close(ws *w, uint16_t code, const char *reason)
{
}

static const ws_handler ws_echo_handler = {ws_echo_message, NULL, ws_echo_close};
static ws_limits echo_limits;

void conformance_ws_echo(conn *c, const http_request *req)
{
	int st = ws_check_upgrade(req);
	if (st) {
		ws_refuse(c, st);
		return;
	}
	/* The large-message cases of the suites need the limits raised:
	 * TIDINGS_MAX_PAYLOAD, TIDINGS_MAX_FRAGMENTS and TIDINGS_MAX_OUTPUT. */
	echo_limits.max_frame = (uint64_t)gw.cfg.max_payload;
	echo_limits.max_message = (uint64_t)gw.cfg.max_payload;
	echo_limits.max_fragments = (uint32_t)gw.cfg.max_fragments;
	ws_accept(c, req, &ws_echo_handler, NULL, &echo_limits);
}
