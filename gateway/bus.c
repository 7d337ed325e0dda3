#include "bus.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/shard.h"
#include "gw.h"
#include "rooms.h"
#include "sio_sock.h"

#define TICK_MS        1000
#define ALIVE_EVERY_MS 5000
#define ALIVE_TTL_S    15
#define DLV_TTL_S      120
#define CMD_TIMEOUT_MS 5000
#define BLOCK_MS       2000
#define READ_COUNT     512
#define MAX_ARGS       (16 + 2 * 16)

/* One hiredis connection as an explicit state machine (nchan's model):
 * DOWN -> CONNECTING -> UP, back to DOWN on any error, retried with
 * backoff from the tick. Replies arriving late are detected by the tick,
 * which tears the connection down (h2o's command timeout). */
enum { RC_DOWN, RC_CONNECTING, RC_UP };

typedef struct rconn {
	const char *name;
	redisAsyncContext *ac;
	int state;
	uint32_t outstanding;
	uint64_t last_reply_ms;
	uint64_t retry_at_ms;
	uint64_t backoff_ms;
	uint64_t timeout_ms;
	void (*on_up)(void);
} rconn;

static rconn cmd = {.name = "command", .timeout_ms = CMD_TIMEOUT_MS};
static rconn blk = {.name = "delivery", .timeout_ms = BLOCK_MS + CMD_TIMEOUT_MS};

static char host[256];
static int port = 6379, db;
static char password[256], username[128];
static struct event *tick_ev;
static uint64_t last_alive_ms;
static char dlv_key[512], alive_key[512], last_id[64];
static uint64_t boot_ms, seq;
static int reading;

static void read_delivery(void);

/* ---- connection management ---- */

static int parse_url(const char *url)
{
	const char *p = url;
	if (strncmp(p, "redis://", 8) == 0)
		p += 8;
	else
		return -1;
	const char *at = strrchr(p, '@');
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon) {
			snprintf(username, sizeof(username), "%.*s", (int)(colon - p), p);
			snprintf(password, sizeof(password), "%.*s", (int)(at - colon - 1),
			         colon + 1);
		} else {
			snprintf(password, sizeof(password), "%.*s", (int)(at - p), p);
		}
		p = at + 1;
	}
	const char *slash = strchr(p, '/');
	size_t hl = slash ? (size_t)(slash - p) : strlen(p);
	const char *colon = memchr(p, ':', hl);
	if (colon) {
		port = atoi(colon + 1);
		hl = (size_t)(colon - p);
	}
	if (hl == 0 || hl >= sizeof(host) || port <= 0 || port > 65535)
		return -1;
	memcpy(host, p, hl);
	host[hl] = '\0';
	if (slash && slash[1])
		db = atoi(slash + 1);
	return 0;
}

static void conn_down(rconn *r, const char *why)
{
	if (r->state != RC_DOWN)
		log_warn("redis %s connection down: %s", r->name, why ? why : "closed");
	r->state = RC_DOWN;
	r->ac = NULL;
	r->outstanding = 0;
	r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 100;
	if (r->backoff_ms > 5000)
		r->backoff_ms = 5000;
	r->retry_at_ms = gw_now() + r->backoff_ms;
	if (r == &blk)
		reading = 0;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	rconn *r = ac->data;
	if (status != REDIS_OK) {
		conn_down(r, ac->errstr);
		return;
	}
	log_info("redis %s connection up (%s:%d)", r->name, host, port);
	r->state = RC_UP;
	r->backoff_ms = 0;
	r->last_reply_ms = gw_now();
	if (r->on_up)
		r->on_up();
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	rconn *r = ac->data;
	conn_down(r, status == REDIS_OK ? "closed" : ac->errstr);
}

static void count_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	rconn *r = ac->data;
	if (r->outstanding)
		r->outstanding--;
	r->last_reply_ms = gw_now();
	redisReply *rep = reply;
	if (rep && rep->type == REDIS_REPLY_ERROR)
		log_warn("redis %s: %s", r->name, rep->str);
}

/* Sends a command whose reply only matters for errors. */
static int send_argv(rconn *r, redisCallbackFn *cb, void *priv, int argc, const char **argv,
                     const size_t *lens)
{
	if (r->state != RC_UP)
		return -1;
	if (redisAsyncCommandArgv(r->ac, cb ? cb : count_reply, priv, argc, argv, lens) != REDIS_OK)
		return -1;
	if (!r->outstanding)
		r->last_reply_ms = gw_now();
	r->outstanding++;
	return 0;
}

static void rconn_start(rconn *r)
{
	r->state = RC_CONNECTING;
	redisAsyncContext *ac = redisAsyncConnect(host, port);
	if (!ac || ac->err) {
		if (ac)
			redisAsyncFree(ac);
		conn_down(r, "connect failed");
		return;
	}
	r->ac = ac;
	ac->data = r;
	redisLibeventAttach(ac, gw.base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	/* Queued now, sent once connected: hiredis keeps command order. */
	if (*password) {
		const char *argv[3] = {"AUTH", *username ? username : password, password};
		size_t lens[3] = {4, strlen(argv[1]), strlen(password)};
		int argc = *username ? 3 : 2;
		redisAsyncCommandArgv(ac, count_reply, NULL, argc, argv, lens);
		r->outstanding++;
	}
	if (db) {
		char d[16];
		snprintf(d, sizeof(d), "%d", db);
		const char *argv[2] = {"SELECT", d};
		size_t lens[2] = {6, strlen(d)};
		redisAsyncCommandArgv(ac, count_reply, NULL, 2, argv, lens);
		r->outstanding++;
	}
}

int bus_ready(void)
{
	return cmd.state == RC_UP;
}

/* ---- argv builder ---- */

typedef struct args {
	int n;
	const char *v[MAX_ARGS];
	size_t l[MAX_ARGS];
	char num[8][24];
	int nnum;
} args;

static void arg(args *a, const char *p, size_t len)
{
	if (a->n < MAX_ARGS) {
		a->v[a->n] = p;
		a->l[a->n++] = len;
	}
}

static void arg_s(args *a, const char *s)
{
	arg(a, s, strlen(s));
}

static void arg_sl(args *a, slice s)
{
	arg(a, s.base ? s.base : "", s.len);
}

static void arg_u64(args *a, uint64_t v)
{
	char *p = a->num[a->nnum++ & 7];
	snprintf(p, 24, "%llu", (unsigned long long)v);
	arg_s(a, p);
}

static int key(char *out, size_t cap, const char *fmt1, const char *v1, const char *fmt2)
{
	int n = snprintf(out, cap, "%s:%s%s%s", gw.cfg.redis_prefix, fmt1, v1, fmt2);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* ---- sessions and registry ---- */

static uint64_t session_ttl_s(void)
{
	return (uint64_t)(gw.cfg.ping_interval_ms + gw.cfg.ping_timeout_ms) / 1000 + 30;
}

void bus_session_add(const sio_sock *s)
{
	char k[600], uk[600];
	if (key(k, sizeof(k), "sid:", s->sid, "") < 0 ||
	    key(uk, sizeof(uk), "user:", s->user, ":sids") < 0)
		return;
	uint64_t now = clock_wall_ms();
	args a = {0};
	arg_s(&a, "HSET");
	arg_s(&a, k);
	arg_s(&a, "user");
	arg_s(&a, s->user);
	arg_s(&a, "gw");
	arg_s(&a, gw.cfg.gateway_id);
	arg_s(&a, "nsp");
	arg_s(&a, s->nsp);
	arg_s(&a, "connected_at");
	arg_u64(&a, now);
	arg_s(&a, "last_seen");
	arg_u64(&a, now);
	send_argv(&cmd, NULL, NULL, a.n, a.v, a.l);
	args e = {0};
	arg_s(&e, "EXPIRE");
	arg_s(&e, k);
	arg_u64(&e, session_ttl_s());
	send_argv(&cmd, NULL, NULL, e.n, e.v, e.l);
	args u = {0};
	arg_s(&u, "SADD");
	arg_s(&u, uk);
	arg_s(&u, s->sid);
	send_argv(&cmd, NULL, NULL, u.n, u.v, u.l);
	e.v[1] = uk;
	e.l[1] = strlen(uk);
	send_argv(&cmd, NULL, NULL, e.n, e.v, e.l);
}

void bus_session_touch(const sio_sock *s)
{
	char k[600];
	if (key(k, sizeof(k), "sid:", s->sid, "") < 0)
		return;
	args a = {0};
	arg_s(&a, "HSET");
	arg_s(&a, k);
	arg_s(&a, "last_seen");
	arg_u64(&a, clock_wall_ms());
	send_argv(&cmd, NULL, NULL, a.n, a.v, a.l);
	args e = {0};
	arg_s(&e, "EXPIRE");
	arg_s(&e, k);
	arg_u64(&e, session_ttl_s());
	send_argv(&cmd, NULL, NULL, e.n, e.v, e.l);
}

void bus_session_del(const sio_sock *s)
{
	char k[600], uk[600];
	if (key(k, sizeof(k), "sid:", s->sid, "") < 0 ||
	    key(uk, sizeof(uk), "user:", s->user, ":sids") < 0)
		return;
	args a = {0};
	arg_s(&a, "DEL");
	arg_s(&a, k);
	send_argv(&cmd, NULL, NULL, a.n, a.v, a.l);
	args u = {0};
	arg_s(&u, "SREM");
	arg_s(&u, uk);
	arg_s(&u, s->sid);
	send_argv(&cmd, NULL, NULL, u.n, u.v, u.l);
}

void bus_room_changed(const room *r)
{
	char k[600], gk[600];
	if (key(k, sizeof(k), "room:", r->name, "") < 0 ||
	    key(gk, sizeof(gk), "gw:", gw.cfg.gateway_id, ":rooms") < 0)
		return;
	args a = {0};
	if (r->count) {
		arg_s(&a, "HSET");
		arg_s(&a, k);
		arg_s(&a, gw.cfg.gateway_id);
		arg_u64(&a, r->count);
	} else {
		arg_s(&a, "HDEL");
		arg_s(&a, k);
		arg_s(&a, gw.cfg.gateway_id);
	}
	send_argv(&cmd, NULL, NULL, a.n, a.v, a.l);
	/* The gateway's own list of registered rooms lets a restarted gateway
	 * with the same id clear what its previous life left behind. */
	args g = {0};
	arg_s(&g, r->count ? "SADD" : "SREM");
	arg_s(&g, gk);
	arg_s(&g, r->name);
	send_argv(&cmd, NULL, NULL, g.n, g.v, g.l);
}

static void republish_room(const room *r)
{
	bus_room_changed(r);
}

/* ---- ingress ---- */

uint32_t bus_shard(slice k)
{
	return shard_of(k, (uint32_t)gw.cfg.shards);
}

int bus_ingress(const sio_sock *s, const char *kind, slice event, slice data, int64_t ack,
                const slice *att, uint32_t natt, slice shard_key)
{
	char k[300], eid[200], userkey[JWT_MAX_ID + 8], shard[16];
	if (!shard_key.len) {
		snprintf(userkey, sizeof(userkey), "user:%s", s->user ? s->user : "");
		shard_key = slice_cstr(userkey);
	}
	snprintf(shard, sizeof(shard), "%u", bus_shard(shard_key));
	if (key(k, sizeof(k), "ingress:", shard, "") < 0)
		return -1;
	snprintf(eid, sizeof(eid), "%s-%llu-%llu", gw.cfg.gateway_id, (unsigned long long)boot_ms,
	         (unsigned long long)++seq);
	args a = {0};
	arg_s(&a, "XADD");
	arg_s(&a, k);
	arg_s(&a, "*");
	arg_s(&a, "v");
	arg_s(&a, "1");
	arg_s(&a, "id");
	arg_s(&a, eid);
	arg_s(&a, "kind");
	arg_s(&a, kind);
	arg_s(&a, "gw");
	arg_s(&a, gw.cfg.gateway_id);
	arg_s(&a, "sid");
	arg_s(&a, s->sid);
	arg_s(&a, "user");
	arg_s(&a, s->user ? s->user : "");
	arg_s(&a, "nsp");
	arg_s(&a, s->nsp);
	if (event.len) {
		arg_s(&a, "event");
		arg_sl(&a, event);
	}
	if (data.len) {
		arg_s(&a, "data");
		arg_sl(&a, data);
	}
	if (ack >= 0) {
		arg_s(&a, "ack");
		arg_u64(&a, (uint64_t)ack);
	}
	static const char *const att_names[] = {"att0",  "att1",  "att2",  "att3", "att4",  "att5",
	                                        "att6",  "att7",  "att8",  "att9", "att10", "att11",
	                                        "att12", "att13", "att14", "att15"};
	for (uint32_t i = 0; i < natt && i < 16; i++) {
		arg_s(&a, att_names[i]);
		arg_sl(&a, att[i]);
	}
	if (send_argv(&cmd, NULL, NULL, a.n, a.v, a.l) < 0) {
		gw.m.ingress_errors++;
		log_warn("sid=%s user=%s %s '%.*s' not queued: Redis is unavailable", s->sid,
		         s->user ? s->user : "-", kind, (int)event.len,
		         event.base ? event.base : "");
		return -1;
	}
	gw.m.ingress_entries++;
	return 0;
}

typedef struct emit_wait {
	bus_emit_cb *cb;
	void *arg;
} emit_wait;

static void on_emit(redisAsyncContext *ac, void *reply, void *priv)
{
	emit_wait *w = priv;
	redisReply *r = reply;
	count_reply(ac, reply, NULL);
	if (!r)
		w->cb(w->arg, "Redis connection lost before the entry was confirmed");
	else if (r->type == REDIS_REPLY_ERROR)
		w->cb(w->arg, r->str);
	else
		w->cb(w->arg, NULL);
	free(w);
}

int bus_emit(const slice *fields, int nfields, slice shard_key, bus_emit_cb *cb, void *arg)
{
	char k[300], shard[16];
	snprintf(shard, sizeof(shard), "%u", bus_shard(shard_key));
	if (key(k, sizeof(k), "ingress:", shard, "") < 0 || nfields > 16)
		return -1;
	args a = {0};
	arg_s(&a, "XADD");
	arg_s(&a, k);
	arg_s(&a, "*");
	for (int i = 0; i < 2 * nfields; i++)
		arg_sl(&a, fields[i]);
	emit_wait *w = malloc(sizeof(*w));
	if (!w)
		return -1;
	w->cb = cb;
	w->arg = arg;
	if (send_argv(&cmd, on_emit, w, a.n, a.v, a.l) < 0) {
		free(w);
		return -1;
	}
	gw.m.ingress_entries++;
	return 0;
}

/* ---- token revocation ---- */

typedef struct revoke_check {
	bus_auth_cb *cb;
	void *arg;
	int64_t iat;
	int has_iat;
	int waiting;
	int revoked;
	int failed;
} revoke_check;

static void revoke_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	revoke_check *rc = priv;
	redisReply *r = reply;
	count_reply(ac, reply, NULL);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		rc->failed = 1;
	} else if (r->type == REDIS_REPLY_INTEGER) {
		if (r->integer > 0)
			rc->revoked = 1; /* token revoked */
	} else if (r->type == REDIS_REPLY_STRING) {
		/* user revoked_at: tokens issued at or before it are dead */
		long long at = atoll(r->str);
		if (!rc->has_iat || rc->iat <= at)
			rc->revoked = 1;
	}
	if (--rc->waiting)
		return;
	if (rc->failed)
		rc->cb(rc->arg, 0, "revocation keys unreadable (Redis unavailable)");
	else
		rc->cb(rc->arg, !rc->revoked, rc->revoked ? "revoked" : NULL);
	free(rc);
}

void bus_check_revoked(const jwt_claims *cl, bus_auth_cb *cb, void *arg)
{
	if (cmd.state != RC_UP) {
		cb(arg, 0, "revocation keys unreadable (Redis unavailable)");
		return;
	}
	revoke_check *rc = calloc(1, sizeof(*rc));
	if (!rc) {
		cb(arg, 0, "out of memory");
		return;
	}
	rc->cb = cb;
	rc->arg = arg;
	rc->iat = cl->iat;
	rc->has_iat = (cl->flags & JWT_HAS_IAT) != 0;
	char k1[600], k2[600];
	snprintf(k2, sizeof(k2), "%s:auth:user:%s:revoked_at", gw.cfg.owui_prefix, cl->id);
	rc->waiting = 1;
	if (cl->flags & JWT_HAS_JTI) {
		snprintf(k1, sizeof(k1), "%s:auth:token:%s:revoked", gw.cfg.owui_prefix, cl->jti);
		const char *argv[2] = {"EXISTS", k1};
		size_t lens[2] = {6, strlen(k1)};
		rc->waiting = 2;
		send_argv(&cmd, revoke_reply, rc, 2, argv, lens);
	}
	const char *argv[2] = {"GET", k2};
	size_t lens[2] = {3, strlen(k2)};
	send_argv(&cmd, revoke_reply, rc, 2, argv, lens);
}

/* ---- delivery stream ---- */

static slice field(const redisReply *kv, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i + 1 < kv->elements; i += 2) {
		const redisReply *f = kv->element[i];
		if (f->type == REDIS_REPLY_STRING && f->len == n && memcmp(f->str, name, n) == 0) {
			const redisReply *v = kv->element[i + 1];
			if (v->type == REDIS_REPLY_STRING)
				return slice_make(v->str, v->len);
		}
	}
	return SLICE_NULL;
}

static void deliver_entry(const char *id, const redisReply *kv)
{
	slice op = field(kv, "op"), target = field(kv, "target"), pkt = field(kv, "pkt");
	slice att[16];
	uint32_t natt = 0;
	char an[8];
	for (; natt < 16; natt++) {
		snprintf(an, sizeof(an), "att%u", natt);
		att[natt] = field(kv, an);
		if (!att[natt].base)
			break;
	}
	gw.m.delivery_entries++;
	if (slice_eq_cstr(op, "room") && pkt.len)
		sio_deliver_room(target, pkt, att, natt, field(kv, "except"));
	else if (slice_eq_cstr(op, "sid") && pkt.len)
		sio_deliver_sid(target, pkt, att, natt);
	else if (slice_eq_cstr(op, "join"))
		sio_join(target, field(kv, "room"));
	else if (slice_eq_cstr(op, "leave"))
		sio_leave(target, field(kv, "room"));
	else if (slice_eq_cstr(op, "disconnect"))
		sio_disconnect(target);
	else if (!slice_eq_cstr(op, "hello"))
		log_warn("delivery entry %s has an unknown op '%.*s': skipped", id, (int)op.len,
		         op.base ? op.base : "");
}

static void on_xread(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	count_reply(ac, reply, NULL);
	reading = 0;
	if (!r || blk.state != RC_UP)
		return;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
		const redisReply *entries = r->element[0]->element[1];
		for (size_t i = 0; i < entries->elements; i++) {
			const redisReply *e = entries->element[i];
			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
				continue;
			snprintf(last_id, sizeof(last_id), "%s", e->element[0]->str);
			if (e->element[1]->type == REDIS_REPLY_ARRAY)
				deliver_entry(last_id, e->element[1]);
		}
	} else if (r->type == REDIS_REPLY_ERROR) {
		log_warn("redis delivery read: %s", r->str);
	}
	read_delivery();
}

static void read_delivery(void)
{
	if (reading || blk.state != RC_UP || !*last_id)
		return;
	char count[16], block[16];
	snprintf(count, sizeof(count), "%d", READ_COUNT);
	snprintf(block, sizeof(block), "%d", BLOCK_MS);
	const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", dlv_key, last_id};
	size_t lens[8];
	for (int i = 0; i < 8; i++)
		lens[i] = strlen(argv[i]);
	if (send_argv(&blk, on_xread, NULL, 8, argv, lens) == 0)
		reading = 1;
}

/* The first XADD of a life gives the stream's current id from Redis's own
 * clock: reading from there misses nothing sent after we came up and
 * replays nothing meant for a previous life of this gateway id. */
static void on_hello(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	count_reply(ac, reply, NULL);
	if (r && r->type == REDIS_REPLY_STRING && !*last_id)
		snprintf(last_id, sizeof(last_id), "%s", r->str);
	read_delivery();
}

static void blk_up(void)
{
	if (*last_id) {
		read_delivery();
		return;
	}
	const char *argv[] = {"XADD", dlv_key, "MAXLEN", "~", "100000", "*", "op", "hello"};
	size_t lens[8];
	for (int i = 0; i < 8; i++)
		lens[i] = strlen(argv[i]);
	send_argv(&blk, on_hello, NULL, 8, argv, lens);
}

/* ---- liveness and housekeeping ---- */

static void publish_alive(void)
{
	char ttl[16], now[24], gk[600];
	snprintf(ttl, sizeof(ttl), "%d", ALIVE_TTL_S);
	snprintf(now, sizeof(now), "%llu", (unsigned long long)clock_wall_ms());
	const char *a1[] = {"SET", alive_key, now, "EX", ttl};
	size_t l1[5];
	for (int i = 0; i < 5; i++)
		l1[i] = strlen(a1[i]);
	send_argv(&cmd, NULL, NULL, 5, a1, l1);
	snprintf(gk, sizeof(gk), "%s:gateways", gw.cfg.redis_prefix);
	const char *a2[] = {"ZADD", gk, now, gw.cfg.gateway_id};
	size_t l2[4];
	for (int i = 0; i < 4; i++)
		l2[i] = strlen(a2[i]);
	send_argv(&cmd, NULL, NULL, 4, a2, l2);
	char dttl[16];
	snprintf(dttl, sizeof(dttl), "%d", DLV_TTL_S);
	const char *a3[] = {"EXPIRE", dlv_key, dttl};
	size_t l3[3] = {6, strlen(dlv_key), strlen(dttl)};
	send_argv(&cmd, NULL, NULL, 3, a3, l3);
	if (*last_id) {
		/* Entries up to the last one read are done with. */
		const char *a4[] = {"XTRIM", dlv_key, "MINID", "~", last_id};
		size_t l4[5];
		for (int i = 0; i < 5; i++)
			l4[i] = strlen(a4[i]);
		send_argv(&cmd, NULL, NULL, 5, a4, l4);
	}
	last_alive_ms = gw_now();
}

/* A restarted gateway with the same id: remove the registrations its
 * previous life left (listed in its :rooms set), then publish the current
 * ones. */
static void on_old_rooms(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	count_reply(ac, reply, NULL);
	if (r && r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->elements; i++) {
			const redisReply *e = r->element[i];
			if (e->type != REDIS_REPLY_STRING || rooms_get(slice_make(e->str, e->len)))
				continue;
			char k[600];
			snprintf(k, sizeof(k), "%s:room:%.*s", gw.cfg.redis_prefix, (int)e->len,
			         e->str);
			const char *argv[] = {"HDEL", k, gw.cfg.gateway_id};
			size_t lens[3] = {4, strlen(k), strlen(gw.cfg.gateway_id)};
			send_argv(&cmd, NULL, NULL, 3, argv, lens);
			char gk[600];
			snprintf(gk, sizeof(gk), "%s:gw:%s:rooms", gw.cfg.redis_prefix,
			         gw.cfg.gateway_id);
			const char *a2[] = {"SREM", gk, e->str};
			size_t l2[3] = {4, strlen(gk), e->len};
			send_argv(&cmd, NULL, NULL, 3, a2, l2);
		}
	}
}

static void cmd_up(void)
{
	char gk[600];
	snprintf(gk, sizeof(gk), "%s:gw:%s:rooms", gw.cfg.redis_prefix, gw.cfg.gateway_id);
	const char *argv[] = {"SMEMBERS", gk};
	size_t lens[2] = {8, strlen(gk)};
	send_argv(&cmd, on_old_rooms, NULL, 2, argv, lens);
	publish_alive();
	/* Whatever changed while Redis was away is published again. */
	sio_each_authed(bus_session_add);
	map_entry *e;
	for (size_t i = 0; (e = map_next(&gw.rooms, &i)) != NULL;)
		republish_room(e->value);
}

static void check(rconn *r, uint64_t now)
{
	if (r->state == RC_DOWN && now >= r->retry_at_ms) {
		rconn_start(r);
	} else if (r->state == RC_UP && r->outstanding && now - r->last_reply_ms > r->timeout_ms) {
		log_warn("redis %s connection: no reply for %llu ms, reconnecting", r->name,
		         (unsigned long long)(now - r->last_reply_ms));
		redisAsyncContext *ac = r->ac;
		conn_down(r, "command timeout");
		redisAsyncDisconnect(ac);
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_now_update();
	uint64_t now = gw_now();
	check(&cmd, now);
	check(&blk, now);
	if (cmd.state == RC_UP && now - last_alive_ms >= ALIVE_EVERY_MS)
		publish_alive();
}

int bus_init(void)
{
	if (parse_url(gw.cfg.redis_url) < 0)
		return -1;
	boot_ms = clock_wall_ms();
	snprintf(dlv_key, sizeof(dlv_key), "%s:gw:%s:dlv", gw.cfg.redis_prefix, gw.cfg.gateway_id);
	snprintf(alive_key, sizeof(alive_key), "%s:gw:%s:alive", gw.cfg.redis_prefix,
	         gw.cfg.gateway_id);
	cmd.on_up = cmd_up;
	blk.on_up = blk_up;
	rooms_changed = bus_room_changed;
	tick_ev = event_new(gw.base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 100000};
	event_add(tick_ev, &tv);
	rconn_start(&cmd);
	rconn_start(&blk);
	return 0;
}

void bus_shutdown(void)
{
	char gk[600];
	if (cmd.state == RC_UP) {
		const char *argv[] = {"DEL", alive_key};
		size_t lens[2] = {3, strlen(alive_key)};
		send_argv(&cmd, NULL, NULL, 2, argv, lens);
		snprintf(gk, sizeof(gk), "%s:gateways", gw.cfg.redis_prefix);
		const char *a2[] = {"ZREM", gk, gw.cfg.gateway_id};
		size_t l2[3] = {4, strlen(gk), strlen(gw.cfg.gateway_id)};
		send_argv(&cmd, NULL, NULL, 3, a2, l2);
	}
	if (tick_ev)
		event_del(tick_ev);
}

int bus_flush_pending(void)
{
	return (int)cmd.outstanding;
}
