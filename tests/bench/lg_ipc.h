/*
 * lg_ipc.h - what the load generator's parent and its client processes say
 * to each other over a pair of pipes.
 *
 * Both ends are the same binary after fork(), so messages are plain structs
 * behind a {type, len} header. The parent sends fixed-size commands (each
 * smaller than PIPE_BUF, so a write is never split); a child answers each
 * command with exactly one message, and reports LG_MSG_CONNECTED on its own
 * when its connect phase is over.
 */
#ifndef TIDINGS_LG_IPC_H
#define TIDINGS_LG_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Parent to child. */
enum {
	LG_CMD_SNAP = 1, /* start counting a step: answer LG_MSG_SNAP_ACK */
	LG_CMD_STATS,    /* answer LG_MSG_STATS with the counts since LG_CMD_SNAP */
	LG_CMD_QUIT      /* close everything and exit */
};

/* Child to parent. */
enum {
	LG_MSG_CONNECTED = 1, /* lg_report: every client connected, failed or timed out */
	LG_MSG_SNAP_ACK,      /* lg_report */
	LG_MSG_STATS          /* lg_report, lg_hist, uint32_t ready clients per user */
};

/* Why a client never got its Socket.IO CONNECT acknowledged. */
enum {
	LG_FAIL_TCP,       /* socket, bind or connect failed */
	LG_FAIL_HANDSHAKE, /* not a valid 101 answer, or a malformed frame */
	LG_FAIL_REFUSED,   /* connect_error (44) from the server */
	LG_FAIL_TIMEOUT,   /* not connected within the connect timeout */
	LG_FAIL_CLOSED,    /* the server closed the connection first */
	LG_FAIL_N
};

typedef struct lg_cmd {
	uint32_t type;
	uint32_t step;
	uint64_t first_seq; /* LG_CMD_SNAP: deliveries of lower seq are late */
} lg_cmd;

typedef struct lg_report {
	uint64_t ok;     /* clients whose CONNECT was acknowledged */
	uint64_t failed; /* clients that never got there */
	uint64_t fail[LG_FAIL_N];
	uint64_t ready;       /* clients connected now */
	uint64_t disconnects; /* connected clients that dropped since */
	uint64_t deliveries;  /* since LG_CMD_SNAP */
	uint64_t late;        /* since LG_CMD_SNAP, of emits sent before it */
	uint64_t bad;         /* events with a "ts" that would not parse */
	uint64_t dropped;     /* messages over the size limit, ignored */
	double cpu_s;         /* CPU the process used since it started */
} lg_report;

typedef struct lg_msg_hdr {
	uint32_t type;
	uint32_t len; /* bytes of body after the header */
} lg_msg_hdr;

/* Writes one message whose body is the concatenation of up to three parts
 * (a NULL part is skipped) to a blocking fd, whole. 0, or -1 on error. */
int lg_ipc_send(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen,
                const void *c, size_t clen);

/* If `in` starts with a whole message, sets *h and *body (pointing into
 * `in`) and returns the bytes it spans, for buf_consume after use; else 0. */
size_t lg_ipc_next(const buf *in, lg_msg_hdr *h, const char **body);

#endif
