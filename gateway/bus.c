/*
 * bus.c - the gateway's side of the Redis contract (bus.h, docs/redis.md).
 *
 * Two connections of common/redis.c: "command" carries every write and
 * look-up, pipelined, and "delivery" carries only the blocking XREAD of this
 * gateway's delivery stream, so that a read blocked for BLOCK_MS never holds
 * a write back. The connection module reconnects with backoff, tears a
 * connection down when a reply is overdue and runs each callback exactly
 * once; this file decides what each connection does when it comes up.
 *
 * While the command connection is down, writes are refused at once and
 * counted: nothing piles up for a Redis that is away. While it is up but
 * Redis does not answer (frozen, overloaded), what was sent waits for at
 * most CMD_TIMEOUT_MS, and never more than MAX_PENDING_BYTES of it: past
 * that, writes are refused as if Redis were away. What was lost either way
 * is published again when the connection comes back (on_command_up):
 * liveness, every session and the whole room registry.
 */
#include "bus.h"

#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/shard.h"
#include "gw.h"
#include "rooms.h"
#include "call.h"
#include "sio_sock.h"

#define TICK_MS        1000
#define ALIVE_EVERY_MS 5000
#define ALIVE_TTL_S    15
#define DLV_TTL_S      120
#define DLV_MAXLEN     100000
/* Redis answers in well under a millisecond; two seconds without any reply
 * means it is frozen or gone, and /readyz should say so while a load
 * balancer can still act on it. */
#define CMD_TIMEOUT_MS 2000
#define BLOCK_MS       2000
#define READ_COUNT     512
#define MAX_ATT        16
/* Bytes of commands waiting for replies on the command connection (an
 * estimate of what hiredis and common/redis.c hold for them). */
#define MAX_PENDING_BYTES ((uint64_t)128 << 20)
#define KEY_MAX           640

/* The delivery reader's step: nothing in flight, the hello XADD in
 * flight, or an XREAD in flight. */
enum { DLV_IDLE, DLV_HELLO, DLV_READING };

/* A key with its length: the bytes of a room name are not assumed to be
 * free of NULs. */
typedef struct rkey {
	char s[KEY_MAX];
	size_t len;
} rkey;

static redis_conn *cmd, *dlv;
static struct event *tick_ev;
static int dlv_step;
static int hello_due; /* the delivery connection came up and has not said hello yet */
static int stopping;
static uint64_t last_alive_ms, seq;
static uint64_t pending_bytes;
static uint64_t write_errors, writes_lost;
static char last_error[160];
static rkey dlv_key, alive_key, gateways_key, rooms_key;
static char last_id[64]; /* delivery stream position: the last id read */

/* ---- keys and commands ---- */

/* prefix ":" a v b into k; -1 when it does not fit. */
static int key_in(rkey *k, const char *prefix, const char *a, slice v, const char *b)
{
	size_t np = strlen(prefix), na = strlen(a), nb = strlen(b);
	if (np + 1 + na + v.len + nb >= sizeof(k->s))
		return -1;
	char *p = k->s;
	memcpy(p, prefix, np);
	p += np;
	*p++ = ':';
	memcpy(p, a, na);
	p += na;
	if (v.len)
		memcpy(p, v.base, v.len);
	p += v.len;
	memcpy(p, b, nb);
	p += nb;
	*p = '\0';
	k->len = (size_t)(p - k->s);
	return 0;
}

/* A key under our own prefix. */
static int key(rkey *k, const char *a, slice v, const char *b)
{
	return key_in(k, gw.cfg.redis_prefix, a, v, b);
}

static void arg_key(redis_argv *a, const rkey *k)
{
	redis_arg(a, k->s, k->len);
}

int bus_ready(void)
{
	return cmd && redis_conn_up(cmd);
}

/* What a command costs while it waits for its reply: its arguments, their
 * RESP framing, and the records that hiredis and common/redis.c keep. */
static uint64_t argv_bytes(const redis_argv *a)
{
	uint64_t n = 128;
	for (int i = 0; i < a->n; i++)
		n += a->l[i] + 16;
	return n;
}

/* What a write holds until its reply: its charge against
 * MAX_PENDING_BYTES, and whether it carries a client's ingress entry. */
typedef struct write_req {
	uint64_t bytes;
	int ingress;
} write_req;

/*
 * A write's reply, or its failure, refunds its charge. Error replies and
 * writes lost with a failed connection are counted and reported once per
 * tick, with the last error's text: a command failing for every socket
 * must not become one log line per socket. A lost ingress entry also
 * counts as an ingress error (the event is gone; a client that asked for
 * an ack never gets one).
 */
static void on_written(redis_conn *rc, const redisReply *reply, void *arg)
{
	write_req w = *(write_req *)arg;
	free(arg);
	pending_bytes -= w.bytes;
	if (!reply) {
		writes_lost++;
	} else if (reply->type == REDIS_REPLY_ERROR) {
		write_errors++;
		snprintf(last_error, sizeof(last_error), "%.*s", (int)reply->len,
		         reply->str ? reply->str : "");
	} else {
		return;
	}
	if (w.ingress)
		gw.m.ingress_errors++;
}

static void report_write_errors(void)
{
	static uint64_t errors_logged, lost_logged;
	if (write_errors == errors_logged && writes_lost == lost_logged)
		return;
	log_warn("redis command: %llu error replies (last: %s), %llu writes lost with the "
	         "connection",
	         (unsigned long long)(write_errors - errors_logged),
	         write_errors != errors_logged ? last_error : "-",
	         (unsigned long long)(writes_lost - lost_logged));
	errors_logged = write_errors;
	lost_logged = writes_lost;
}

/* Sends a write on the command connection: a command whose reply matters
 * only when it is an error. 0 when queued; -1 when Redis is away or the
 * commands already waiting for replies reach MAX_PENDING_BYTES. */
static int send_write_as(const redis_argv *a, int ingress)
{
	uint64_t n = argv_bytes(a);
	if (!bus_ready() || pending_bytes + n > MAX_PENDING_BYTES)
		return -1;
	write_req *w = malloc(sizeof(*w));
	if (!w)
		return -1;
	*w = (write_req){n, ingress};
	if (redis_send(cmd, on_written, w, a) < 0) {
		free(w);
		return -1;
	}
	pending_bytes += n;
	return 0;
}

static int send_write(const redis_argv *a)
{
	return send_write_as(a, 0);
}

static void send_expire(const rkey *k, uint64_t ttl_s)
{
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "EXPIRE");
	arg_key(&a, k);
	redis_arg_u64(&a, ttl_s);
	send_write(&a);
}

/* ---- sessions and registry ---- */

static uint64_t session_ttl_s(void)
{
	return (uint64_t)(gw.cfg.ping_interval_ms + gw.cfg.ping_timeout_ms) / 1000 + 30;
}

/* With a per-user cap, P:user:{id}:conns scores each authenticated sid by
 * its last heartbeat (wall ms): counting the recent ones gives the user's
 * live connections cluster-wide, and a crashed gateway's sids age out by
 * themselves instead of holding the user's slots forever. */
static void conns_update(const sio_sock *s, int remove)
{
	rkey ck;
	if (!gw.cfg.max_conns_per_user || key(&ck, "user:", slice_cstr(s->user), ":conns") < 0)
		return;
	redis_argv a;
	redis_argv_init(&a);
	if (remove) {
		redis_arg_str(&a, "ZREM");
		arg_key(&a, &ck);
		redis_arg_str(&a, s->sid);
	} else {
		redis_arg_str(&a, "ZADD");
		arg_key(&a, &ck);
		redis_arg_u64(&a, clock_wall_ms());
		redis_arg_str(&a, s->sid);
	}
	send_write(&a);
	if (!remove)
		send_expire(&ck, session_ttl_s());
}

void bus_session_add(const sio_sock *s)
{
	rkey k, uk;
	if (key(&k, "sid:", slice_cstr(s->sid), "") < 0 ||
	    key(&uk, "user:", slice_cstr(s->user), ":sids") < 0)
		return;
	uint64_t now = clock_wall_ms();
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "HSET");
	arg_key(&a, &k);
	redis_arg_str(&a, "user");
	redis_arg_str(&a, s->user);
	redis_arg_str(&a, "gw");
	redis_arg_str(&a, gw.cfg.gateway_id);
	redis_arg_str(&a, "nsp");
	redis_arg_str(&a, s->nsp);
	redis_arg_str(&a, "connected_at");
	redis_arg_u64(&a, now);
	redis_arg_str(&a, "last_seen");
	redis_arg_u64(&a, now);
	send_write(&a);
	send_expire(&k, session_ttl_s());
	redis_argv_init(&a);
	redis_arg_str(&a, "SADD");
	arg_key(&a, &uk);
	redis_arg_str(&a, s->sid);
	send_write(&a);
	send_expire(&uk, session_ttl_s());
	conns_update(s, 0);
}

void bus_session_touch(const sio_sock *s)
{
	rkey k;
	if (key(&k, "sid:", slice_cstr(s->sid), "") < 0)
		return;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "HSET");
	arg_key(&a, &k);
	redis_arg_str(&a, "last_seen");
	redis_arg_u64(&a, clock_wall_ms());
	send_write(&a);
	send_expire(&k, session_ttl_s());
	conns_update(s, 0);
}

void bus_session_del(const sio_sock *s)
{
	rkey k, uk;
	if (key(&k, "sid:", slice_cstr(s->sid), "") < 0 ||
	    key(&uk, "user:", slice_cstr(s->user), ":sids") < 0)
		return;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "DEL");
	arg_key(&a, &k);
	send_write(&a);
	redis_argv_init(&a);
	redis_arg_str(&a, "SREM");
	arg_key(&a, &uk);
	redis_arg_str(&a, s->sid);
	send_write(&a);
	conns_update(s, 1);
}

/* Removes this gateway's field from room `name`'s registry hash and the
 * room from the gateway's own list. */
static void unregister_room(slice name)
{
	rkey k;
	if (key(&k, "room:", name, "") < 0)
		return;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "HDEL");
	arg_key(&a, &k);
	redis_arg_str(&a, gw.cfg.gateway_id);
	send_write(&a);
	redis_argv_init(&a);
	redis_arg_str(&a, "SREM");
	arg_key(&a, &rooms_key);
	redis_arg_slice(&a, name);
	send_write(&a);
}

void bus_room_changed(const room *r)
{
	slice name = slice_make(r->name, r->len);
	if (!r->count) {
		unregister_room(name);
		return;
	}
	rkey k;
	if (key(&k, "room:", name, "") < 0)
		return;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "HSET");
	arg_key(&a, &k);
	redis_arg_str(&a, gw.cfg.gateway_id);
	redis_arg_u64(&a, r->count);
	send_write(&a);
	/* The gateway's own list of registered rooms lets a restarted gateway
	 * with the same id clear what its previous life left behind. */
	redis_argv_init(&a);
	redis_arg_str(&a, "SADD");
	arg_key(&a, &rooms_key);
	redis_arg_slice(&a, name);
	send_write(&a);
}

/* ---- ingress ---- */

uint32_t bus_shard(slice k)
{
	return shard_of(k, (uint32_t)gw.cfg.shards);
}

static int ingress_key(rkey *k, slice shard_key)
{
	char shard[BUF_U64_DIGITS];
	return key(k, "ingress:", slice_make(shard, buf_u64_digits(shard, bus_shard(shard_key))),
	           "");
}

static char id_base[160]; /* "{gateway}-{boot ms}-", made at bus_init */
static size_t id_base_len;

/* Ids grow with time within a gateway, so a worker recording them in
 * tidings_event adds to the right edge of its primary key: random ids
 * landed all over the index and cost 2.5 times as much per row (psql,
 * 10 000-row inserts into 200 000 rows: 58-89 ms against 21-24 ms). */
void bus_event_id(char *out, size_t n, const char *prefix)
{
	/* Two connect-path ids a tab: snprintf of the whole was 2 % of the
	 * gateway's instructions there, most of it re-formatting the part
	 * that never changes. */
	size_t plen = strlen(prefix);
	if (plen + id_base_len + BUF_U64_DIGITS + 1 > n) {
		snprintf(out, n, "%s%s%llu", prefix, id_base, (unsigned long long)++seq);
		return;
	}
	memcpy(out, prefix, plen);
	memcpy(out + plen, id_base, id_base_len);
	size_t d = buf_u64_digits(out + plen + id_base_len, ++seq);
	out[plen + id_base_len + d] = '\0';
}

int bus_ingress(const sio_sock *s, const char *kind, slice event, slice data, int64_t ack,
                const slice *att, uint32_t natt, slice shard_key)
{
	static const char *const att_names[MAX_ATT] = {
	    "att0", "att1", "att2",  "att3",  "att4",  "att5",  "att6",  "att7",
	    "att8", "att9", "att10", "att11", "att12", "att13", "att14", "att15"};
	char eid[200], userkey[JWT_MAX_ID + 8];
	rkey k;
	const char *user = s->user ? s->user : "";
	if (!shard_key.len) {
		snprintf(userkey, sizeof(userkey), "user:%s", user);
		shard_key = slice_cstr(userkey);
	}
	if (ingress_key(&k, shard_key) < 0)
		return -1;
	bus_event_id(eid, sizeof(eid), "");
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XADD");
	arg_key(&a, &k);
	redis_arg_str(&a, "*");
	redis_arg_str(&a, "v");
	redis_arg_str(&a, "1");
	redis_arg_str(&a, "id");
	redis_arg_str(&a, eid);
	redis_arg_str(&a, "kind");
	redis_arg_str(&a, kind);
	redis_arg_str(&a, "gw");
	redis_arg_str(&a, gw.cfg.gateway_id);
	redis_arg_str(&a, "sid");
	redis_arg_str(&a, s->sid);
	redis_arg_str(&a, "user");
	redis_arg_str(&a, user);
	redis_arg_str(&a, "nsp");
	redis_arg_str(&a, s->nsp);
	if (event.len) {
		redis_arg_str(&a, "event");
		redis_arg_slice(&a, event);
	}
	if (data.len) {
		redis_arg_str(&a, "data");
		redis_arg_slice(&a, data);
	}
	if (ack >= 0) {
		redis_arg_str(&a, "ack");
		redis_arg_i64(&a, ack);
	}
	for (uint32_t i = 0; i < natt && i < MAX_ATT; i++) {
		redis_arg_str(&a, att_names[i]);
		redis_arg_slice(&a, att[i]);
	}
	if (send_write_as(&a, 1) < 0) {
		gw.m.ingress_errors++;
		log_warn("sid=%s user=%s %s '%.*s' not queued: %s", s->sid, s->user ? s->user : "-",
		         kind, (int)event.len, event.base ? event.base : "",
		         bus_ready() ? "too many commands wait for Redis" : "Redis is unavailable");
		return -1;
	}
	gw.m.ingress_entries++;
	return 0;
}

typedef struct emit_wait {
	bus_emit_cb *cb;
	void *arg;
	uint64_t bytes;
} emit_wait;

static void on_emit(redis_conn *rc, const redisReply *r, void *arg)
{
	emit_wait w = *(emit_wait *)arg;
	free(arg);
	pending_bytes -= w.bytes;
	if (!r)
		w.cb(w.arg, "Redis did not confirm the entry (connection lost or reply overdue)");
	else if (r->type == REDIS_REPLY_ERROR)
		w.cb(w.arg, r->str ? r->str : "error reply");
	else
		w.cb(w.arg, NULL);
}

int bus_emit(const slice *fields, int nfields, slice shard_key, bus_emit_cb *cb, void *arg)
{
	rkey k;
	if (nfields < 0 || nfields > 16 || ingress_key(&k, shard_key) < 0)
		return -1;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XADD");
	arg_key(&a, &k);
	redis_arg_str(&a, "*");
	for (int i = 0; i < 2 * nfields; i++)
		redis_arg_slice(&a, fields[i]);
	uint64_t n = argv_bytes(&a);
	if (!bus_ready() || pending_bytes + n > MAX_PENDING_BYTES)
		return -1;
	emit_wait *w = malloc(sizeof(*w));
	if (!w)
		return -1;
	*w = (emit_wait){cb, arg, n};
	if (redis_send(cmd, on_emit, w, &a) < 0) {
		free(w);
		return -1;
	}
	pending_bytes += n;
	gw.m.ingress_entries++;
	return 0;
}

/* ---- calls ---- */

typedef struct session_wait {
	bus_session_cb *cb;
	void *arg;
} session_wait;

static void on_session(redis_conn *rc, const redisReply *r, void *arg)
{
	session_wait w = *(session_wait *)arg;
	free(arg);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		w.cb(w.arg, NULL, NULL, "Redis could not read the session");
		return;
	}
	/* HMGET gw user: two values, nil when the session does not exist. */
	char gwid[128] = "", user[160] = "";
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		if (r->element[0]->type == REDIS_REPLY_STRING)
			snprintf(gwid, sizeof(gwid), "%.*s", (int)r->element[0]->len,
			         r->element[0]->str);
		if (r->element[1]->type == REDIS_REPLY_STRING)
			snprintf(user, sizeof(user), "%.*s", (int)r->element[1]->len,
			         r->element[1]->str);
	}
	w.cb(w.arg, *gwid ? gwid : NULL, *user ? user : NULL, NULL);
}

int bus_session_get(slice sid, bus_session_cb *cb, void *arg)
{
	rkey k;
	if (key(&k, "sid:", sid, "") < 0 || !bus_ready())
		return -1;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "HMGET");
	arg_key(&a, &k);
	redis_arg_str(&a, "gw");
	redis_arg_str(&a, "user");
	session_wait *w = malloc(sizeof(*w));
	if (!w)
		return -1;
	*w = (session_wait){cb, arg};
	if (redis_send(cmd, on_session, w, &a) < 0) {
		free(w);
		return -1;
	}
	return 0;
}

int bus_deliver(slice gw_id, const slice *fields, int nfields)
{
	rkey k;
	if (nfields < 0 || nfields > 16 || key(&k, "gw:", gw_id, ":dlv") < 0)
		return -1;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XADD");
	arg_key(&a, &k);
	redis_arg_str(&a, "MAXLEN");
	redis_arg_str(&a, "~");
	redis_arg_str(&a, "100000");
	redis_arg_str(&a, "*");
	for (int i = 0; i < 2 * nfields; i++)
		redis_arg_slice(&a, fields[i]);
	return send_write(&a);
}

const char *bus_gateway_id(void)
{
	return gw.cfg.gateway_id;
}

/* ---- token revocation ---- */

typedef struct revoke_check {
	bus_auth_cb *cb;
	void *arg;
	int64_t iat;
	int has_iat;
	int waiting; /* replies due, plus one held while the commands are sent */
	int revoked;
	int failed;
	long long conns; /* the user's live connections, when capped */
} revoke_check;

#define UNREADABLE "revocation keys unreadable (Redis unavailable)"

/* Drops one reference; the last one gives the answer, exactly once. */
static void revoke_release(revoke_check *rv)
{
	if (--rv->waiting)
		return;
	bus_auth_cb *cb = rv->cb;
	void *arg = rv->arg;
	int failed = rv->failed, revoked = rv->revoked;
	int full = gw.cfg.max_conns_per_user && rv->conns >= gw.cfg.max_conns_per_user;
	free(rv);
	if (failed)
		cb(arg, 0, UNREADABLE);
	else if (revoked)
		cb(arg, 0, "revoked");
	else
		cb(arg, !full, full ? BUS_TOO_MANY : NULL);
}

/* MGET [token key] user key: the token's own revocation key exists (Open
 * WebUI SETs it to a string), or the user's revoked_at says tokens issued
 * at or before it are dead. */
static void on_revoke_reply(redis_conn *rc, const redisReply *r, void *arg)
{
	revoke_check *rv = arg;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
		rv->failed = 1;
	} else {
		const redisReply *at = r->element[r->elements - 1];
		if (r->elements == 2 && r->element[0]->type != REDIS_REPLY_NIL)
			rv->revoked = 1;
		if (at->type == REDIS_REPLY_STRING &&
		    (!rv->has_iat || rv->iat <= strtoll(at->str, NULL, 10)))
			rv->revoked = 1;
	}
	revoke_release(rv);
}

/* Both look-ups of the check in one command; one that cannot be sent
 * fails the check. */
static void revoke_send(revoke_check *rv, const jwt_claims *cl)
{
	rkey tk, uk;
	redis_argv argv;
	int jti = (cl->flags & JWT_HAS_JTI) != 0;
	if ((jti &&
	     key_in(&tk, gw.cfg.owui_prefix, "auth:token:", slice_cstr(cl->jti), ":revoked") < 0) ||
	    key_in(&uk, gw.cfg.owui_prefix, "auth:user:", slice_cstr(cl->id), ":revoked_at") < 0) {
		rv->failed = 1;
		return;
	}
	redis_argv_init(&argv);
	redis_arg_str(&argv, "MGET");
	if (jti)
		arg_key(&argv, &tk);
	arg_key(&argv, &uk);
	rv->waiting++;
	if (!bus_ready() || redis_send(cmd, on_revoke_reply, rv, &argv) < 0) {
		rv->waiting--;
		rv->failed = 1;
	}
}

const char BUS_TOO_MANY[] = "too many connections for this user";

static void on_conns_reply(redis_conn *rc, const redisReply *r, void *arg)
{
	revoke_check *rv = arg;
	if (!r || r->type != REDIS_REPLY_INTEGER)
		rv->failed = 1;
	else
		rv->conns = r->integer;
	revoke_release(rv);
}

/* Counts the user's connections seen within a session's lifetime. */
static void conns_send(revoke_check *rv, const char *user)
{
	rkey k;
	if (rv->failed || key(&k, "user:", slice_cstr(user), ":conns") < 0) {
		rv->failed = 1;
		return;
	}
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "ZCOUNT");
	arg_key(&a, &k);
	redis_arg_u64(&a, clock_wall_ms() - session_ttl_s() * 1000);
	redis_arg_str(&a, "+inf");
	rv->waiting++;
	if (!bus_ready() || redis_send(cmd, on_conns_reply, rv, &a) < 0) {
		rv->waiting--;
		rv->failed = 1;
	}
}

void bus_check_revoked(const jwt_claims *cl, bus_auth_cb *cb, void *arg)
{
	if (!bus_ready()) {
		cb(arg, 0, UNREADABLE);
		return;
	}
	revoke_check *rv = calloc(1, sizeof(*rv));
	if (!rv) {
		cb(arg, 0, "out of memory");
		return;
	}
	rv->cb = cb;
	rv->arg = arg;
	rv->iat = cl->iat;
	rv->has_iat = (cl->flags & JWT_HAS_IAT) != 0;
	/* The held reference keeps a reply, or a refused second command, from
	 * answering before both look-ups are accounted for. */
	rv->waiting = 1;
	revoke_send(rv, cl);
	if (gw.cfg.max_conns_per_user)
		conns_send(rv, cl->id);
	revoke_release(rv);
}

/* ---- delivery stream ---- */

static void deliver_entry(const char *id, const redisReply *kv)
{
	slice op = redis_field(kv, "op"), target = redis_field(kv, "target");
	slice pkt = redis_field(kv, "pkt");
	slice att[MAX_ATT];
	uint32_t natt = 0;
	char an[8];
	for (; natt < MAX_ATT; natt++) {
		snprintf(an, sizeof(an), "att%u", natt);
		att[natt] = redis_field(kv, an);
		if (!att[natt].base)
			break;
	}
	gw.m.delivery_entries++;
	if (slice_eq_cstr(op, "room") && pkt.len)
		sio_deliver_room(target, pkt, att, natt, redis_field(kv, "except"));
	else if (slice_eq_cstr(op, "sid") && pkt.len)
		sio_deliver_sid(target, pkt, att, natt);
	else if (slice_eq_cstr(op, "join"))
		sio_join(target, redis_field(kv, "room"));
	else if (slice_eq_cstr(op, "leave"))
		sio_leave(target, redis_field(kv, "room"));
	else if (slice_eq_cstr(op, "disconnect"))
		sio_disconnect(target);
	else if (slice_eq_cstr(op, "rooms"))
		sio_sync_rooms(target, redis_field(kv, "prefix"), redis_field(kv, "rooms"));
	else if (slice_eq_cstr(op, "call"))
		sio_call(target, redis_field(kv, "event"), redis_field(kv, "data"),
		         redis_field(kv, "reply_gw"), redis_field(kv, "call"));
	else if (slice_eq_cstr(op, "reply"))
		call_reply(target, redis_field(kv, "data"), redis_field(kv, "error"));
	else if (!slice_eq_cstr(op, "hello"))
		log_warn("delivery entry %s has an unknown op '%.*s': skipped", id, (int)op.len,
		         op.base ? op.base : "");
}

/* XREAD's reply for one stream: [[stream, [[id, [field, value, ...]], ...]]]. */
static void deliver_batch(const redisReply *r)
{
	if (r->elements != 1 || r->element[0]->type != REDIS_REPLY_ARRAY ||
	    r->element[0]->elements != 2 || r->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
		return;
	const redisReply *entries = r->element[0]->element[1];
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[0]->len >= sizeof(last_id))
			continue;
		memcpy(last_id, e->element[0]->str, e->element[0]->len);
		last_id[e->element[0]->len] = '\0';
		if (e->element[1]->type == REDIS_REPLY_ARRAY)
			deliver_entry(last_id, e->element[1]);
	}
}

static void dlv_pump(void);

static void on_xread(redis_conn *rc, const redisReply *r, void *arg)
{
	dlv_step = DLV_IDLE;
	if (!r)
		return; /* the connection failed; its next on_up starts over */
	if (r->type == REDIS_REPLY_ERROR) {
		/* Not retried at once: an error that repeats (a key of the wrong
		 * type) would spin. The tick retries. */
		log_warn("redis delivery read of %s: %s", dlv_key.s, r->str ? r->str : "error");
		return;
	}
	if (r->type == REDIS_REPLY_ARRAY)
		deliver_batch(r);
	dlv_pump();
}

static void send_xread(void)
{
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XREAD");
	redis_arg_str(&a, "COUNT");
	redis_arg_u64(&a, READ_COUNT);
	redis_arg_str(&a, "BLOCK");
	redis_arg_u64(&a, BLOCK_MS);
	redis_arg_str(&a, "STREAMS");
	arg_key(&a, &dlv_key);
	redis_arg_str(&a, last_id);
	if (redis_send(dlv, on_xread, NULL, &a) == 0)
		dlv_step = DLV_READING;
}

/* Parses a stream id "ms-seq"; a missing part is 0. */
static void parse_id(const char *s, unsigned long long *ms, unsigned long long *sq)
{
	char *end;
	*ms = strtoull(s, &end, 10);
	*sq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

static int id_after(const char *a, const char *b)
{
	unsigned long long am, as, bm, bs;
	parse_id(a, &am, &as);
	parse_id(b, &bm, &bs);
	return am > bm || (am == bm && as > bs);
}

/*
 * The hello's id comes from Redis's clock. A first hello is where this
 * process starts reading: nothing sent after it came up is missed, nothing
 * meant for a previous life of this gateway id is replayed. A later hello,
 * after a reconnect, is past our position when the stream still holds it
 * (Redis was frozen or unreachable, or restarted from its AOF, or restarted
 * empty with the same clock): reading on from our position then delivers
 * what was written while we were away. A hello at or before our position
 * means the stream was lost and its ids restarted behind us; reading from
 * our position would skip everything up to it, so we start at the hello.
 */
static void on_hello(redis_conn *rc, const redisReply *r, void *arg)
{
	dlv_step = DLV_IDLE;
	if (!r)
		return;
	if (r->type != REDIS_REPLY_STRING || r->len >= sizeof(last_id)) {
		log_warn("redis delivery: hello XADD to %s failed: %s", dlv_key.s,
		         r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply");
		return; /* retried by the tick */
	}
	hello_due = 0;
	if (!*last_id || !id_after(r->str, last_id)) {
		if (*last_id)
			log_warn("redis delivery stream %s restarted behind position %s: reading "
			         "from %s",
			         dlv_key.s, last_id, r->str);
		memcpy(last_id, r->str, r->len);
		last_id[r->len] = '\0';
	}
	dlv_pump();
}

static void send_hello(void)
{
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XADD");
	arg_key(&a, &dlv_key);
	redis_arg_str(&a, "MAXLEN");
	redis_arg_str(&a, "~");
	redis_arg_u64(&a, DLV_MAXLEN);
	redis_arg_str(&a, "*");
	redis_arg_str(&a, "op");
	redis_arg_str(&a, "hello");
	if (redis_send(dlv, on_hello, NULL, &a) == 0)
		dlv_step = DLV_HELLO;
}

/* Sends the delivery connection's next command, if it has none in flight:
 * the hello once per connection, then one XREAD after another. */
static void dlv_pump(void)
{
	if (dlv_step != DLV_IDLE || !dlv || !redis_conn_up(dlv))
		return;
	if (hello_due)
		send_hello();
	else if (*last_id)
		send_xread();
}

/* ---- liveness, housekeeping, connection events ---- */

static void publish_alive(void)
{
	uint64_t now = clock_wall_ms();
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "SET");
	arg_key(&a, &alive_key);
	redis_arg_u64(&a, now);
	redis_arg_str(&a, "EX");
	redis_arg_u64(&a, ALIVE_TTL_S);
	send_write(&a);
	redis_argv_init(&a);
	redis_arg_str(&a, "ZADD");
	arg_key(&a, &gateways_key);
	redis_arg_u64(&a, now);
	redis_arg_str(&a, gw.cfg.gateway_id);
	send_write(&a);
	send_expire(&dlv_key, DLV_TTL_S);
	if (*last_id) {
		/* Entries up to the last one read are done with. */
		redis_argv_init(&a);
		redis_arg_str(&a, "XTRIM");
		arg_key(&a, &dlv_key);
		redis_arg_str(&a, "MINID");
		redis_arg_str(&a, "~");
		redis_arg_str(&a, last_id);
		send_write(&a);
	}
	last_alive_ms = gw_now();
}

/* A restarted gateway with the same id, or one whose removals were lost
 * while Redis was away: drop the registrations its :rooms set lists that
 * are not local rooms any more. */
static void on_old_rooms(redis_conn *rc, const redisReply *r, void *arg)
{
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_STRING)
			continue;
		slice name = slice_make(e->str, e->len);
		if (!rooms_get(name))
			unregister_room(name);
	}
}

/* Whatever changed while Redis was away is published again. */
static void on_command_up(redis_conn *rc, void *arg)
{
	log_info("redis command connection up");
	if (stopping)
		return;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "SMEMBERS");
	arg_key(&a, &rooms_key);
	redis_send(cmd, on_old_rooms, NULL, &a);
	publish_alive();
	sio_each_authed(bus_session_add);
	map_entry *e;
	for (size_t i = 0; (e = map_next(&gw.rooms, &i)) != NULL;)
		bus_room_changed(e->value);
}

static void on_delivery_up(redis_conn *rc, void *arg)
{
	log_info("redis delivery connection up");
	hello_due = 1;
	dlv_pump();
}

static void on_down(redis_conn *rc, const char *err, void *arg)
{
	log_warn("redis %s connection down: %s", (const char *)arg, err ? err : "closed");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_now_update();
	if (bus_ready() && gw_now() - last_alive_ms >= ALIVE_EVERY_MS)
		publish_alive();
	dlv_pump();
	report_write_errors();
}

int bus_init(void)
{
	slice id = slice_cstr(gw.cfg.gateway_id);
	if (key(&dlv_key, "gw:", id, ":dlv") < 0 || key(&alive_key, "gw:", id, ":alive") < 0 ||
	    key(&rooms_key, "gw:", id, ":rooms") < 0 ||
	    key(&gateways_key, "gateways", SLICE_NULL, "") < 0) {
		log_error("redis prefix '%s' and gateway id '%s' make keys longer than %d bytes",
		          gw.cfg.redis_prefix, gw.cfg.gateway_id, KEY_MAX - 1);
		return -1;
	}
	int bl = snprintf(id_base, sizeof(id_base), "%s-%llu-", gw.cfg.gateway_id,
	                  (unsigned long long)clock_wall_ms()); /* the boot time */
	id_base_len = bl < 0 ? 0 : (size_t)bl < sizeof(id_base) ? (size_t)bl : sizeof(id_base) - 1;
	redis_conn_opts co = {.url = gw.cfg.redis_url,
	                      .name = "command",
	                      .timeout_ms = CMD_TIMEOUT_MS,
	                      .on_up = on_command_up,
	                      .on_down = on_down,
	                      .arg = "command"};
	redis_conn_opts dopts = {.url = gw.cfg.redis_url,
	                         .name = "delivery",
	                         .timeout_ms = BLOCK_MS + CMD_TIMEOUT_MS,
	                         .on_up = on_delivery_up,
	                         .on_down = on_down,
	                         .arg = "delivery"};
	cmd = redis_conn_create(gw.base, &co);
	dlv = cmd ? redis_conn_create(gw.base, &dopts) : NULL;
	tick_ev = dlv ? event_new(gw.base, -1, EV_PERSIST, on_tick, NULL) : NULL;
	if (!tick_ev) {
		redis_conn_destroy(dlv);
		redis_conn_destroy(cmd);
		dlv = cmd = NULL;
		return -1;
	}
	rooms_changed = bus_room_changed;
	struct timeval tv = {TICK_MS / 1000, (suseconds_t)(TICK_MS % 1000) * 1000};
	event_add(tick_ev, &tv);
	return 0;
}

/* The command connection stays open: the sessions closing during the
 * drain still remove their keys and registrations through it. */
void bus_shutdown(void)
{
	stopping = 1;
	if (tick_ev)
		event_del(tick_ev);
	redis_conn_destroy(dlv);
	dlv = NULL;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "DEL");
	arg_key(&a, &alive_key);
	send_write(&a);
	redis_argv_init(&a);
	redis_arg_str(&a, "ZREM");
	arg_key(&a, &gateways_key);
	redis_arg_str(&a, gw.cfg.gateway_id);
	send_write(&a);
}

int bus_flush_pending(void)
{
	return cmd ? (int)redis_conn_pending(cmd) : 0;
}
