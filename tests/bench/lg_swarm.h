/*
 * lg_swarm.h - one client process of the load generator: a swarm of
 * Socket.IO v5 clients over WebSocket on a single libevent loop.
 *
 * The process opens clients index, index + procs, index + 2 * procs, ...
 * of the run, each bound to the source address before it connects. Every
 * client goes through TCP connect, the HTTP upgrade, the Engine.IO open
 * packet and a Socket.IO CONNECT carrying its user's token, and, once that
 * is acknowledged, optionally emits `user-join` as Open WebUI's front end
 * does. From then on it answers pings and counts the `events` packets that
 * carry a "ts" stamp, recording their latency.
 *
 * The parent steers it through lg_ipc commands on cmd_fd and hears back on
 * rep_fd; see lg_ipc.h for the conversation.
 */
#ifndef TIDINGS_LG_SWARM_H
#define TIDINGS_LG_SWARM_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct lg_swarm_opts {
	uint32_t index, procs;      /* this process is number `index` of `procs` */
	uint32_t clients, users;    /* of the whole run */
	const struct sockaddr *dst; /* the server */
	socklen_t dstlen;
	const struct sockaddr *src; /* bound before connecting (port 0); NULL: none */
	socklen_t srclen;
	const char *host;      /* Host header */
	const char *path;      /* Socket.IO path, e.g. "/ws/socket.io/" */
	char *const *tokens;   /* a JWT per user */
	int user_join;         /* emit user-join after CONNECT */
	uint32_t connect_rate; /* new connections per second; 0: 256 in flight */
	uint32_t connect_timeout_ms;
	uint8_t nonce[12]; /* per process: WebSocket keys are nonce + index */
	uint64_t seed;     /* per process: the masking keys' generator */
	int cmd_fd, rep_fd;
} lg_swarm_opts;

/* Runs the swarm until LG_CMD_QUIT or until the parent goes away (EOF on
 * cmd_fd). Returns the process's exit status. The options must stay valid
 * throughout. */
int lg_swarm_run(const lg_swarm_opts *o);

#endif
