#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "common/map.h"
#include "wk.h"

#define MAX_LIVE 1024

/* Gateways alive (P:gateways scores within 15 s) as of the latest publish
 * that looked rooms up. */
static char *live[MAX_LIVE];
static int nlive;

static int is_live(const char *gw, size_t len)
{
	for (int i = 0; i < nlive; i++)
		if (strlen(live[i]) == len && memcmp(live[i], gw, len) == 0)
			return 1;
	return 0;
}

/* The gateways that refreshed their liveness in the last 15 s. */
static int send_live(redis_reply_fn *cb, void *arg)
{
	char key[300], min[32];
	snprintf(key, sizeof(key), "%s:gateways", wk.cfg.redis_prefix);
	snprintf(min, sizeof(min), "%llu", (unsigned long long)time(NULL) * 1000 - 15000);
	const char *argv[] = {"ZRANGEBYSCORE", key, min, "+inf"};
	size_t lens[] = {13, strlen(key), strlen(min), 4};
	return redis_cmd(wk.rc, cb, arg, 4, argv, lens);
}

void fanout_init(fanout_list *l)
{
	memset(l, 0, sizeof(*l));
}

struct fanout_step {
	fanout_list *l;  /* the list being published */
	fanout_list sub; /* the deliveries it made; their gateways are known */
	fanout_step_fn *run;
	void (*dispose)(void *arg);
	void *arg;
};

static void op_free(fanout_op *o)
{
	free(o->gw);
	free(o->target);
	free(o->room);
	free(o->pkt);
	free(o->except);
	for (int i = 0; i < o->ngws; i++)
		free(o->gws[i]);
	free(o->gws);
	for (int i = 0; i < o->natt; i++)
		free(o->att[i]);
	free(o->att);
	free(o->att_len);
	if (o->step) {
		if (o->step->dispose)
			o->step->dispose(o->step->arg);
		fanout_dispose(&o->step->sub);
		free(o->step);
	}
}

void fanout_dispose(fanout_list *l)
{
	for (int i = 0; i < l->n; i++)
		op_free(&l->ops[i]);
	free(l->ops);
	memset(l, 0, sizeof(*l));
}

static fanout_op *push(fanout_list *l, int type)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->ops = realloc(l->ops, (size_t)l->cap * sizeof(*l->ops));
	}
	fanout_op *o = &l->ops[l->n++];
	memset(o, 0, sizeof(*o));
	o->type = type;
	return o;
}

static char *str_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* 2["event",data] on the root namespace; with attachments the binary
 * event 5{natt}-["event",data]. Written straight into one buffer: no copy
 * of data, no intermediate strings. */
static char *event_packet(const char *event, const cJSON *data, int natt)
{
	buf b;
	buf_init(&b, 0);
	int rc = 0;
	if (natt > 0) {
		rc |= buf_append_byte(&b, '5');
		rc |= buf_append_u64(&b, (uint64_t)natt);
		rc |= buf_append_byte(&b, '-');
	} else {
		rc |= buf_append_byte(&b, '2');
	}
	const cJSON name = {.type = cJSON_String, .valuestring = (char *)event};
	rc |= buf_append_byte(&b, '[');
	rc |= json_append(&b, &name);
	if (data) {
		rc |= buf_append_byte(&b, ',');
		rc |= json_append(&b, data);
	}
	rc |= buf_append(&b, "]", 2); /* with the terminator */
	if (rc) {
		buf_dispose(&b);
		return NULL;
	}
	return b.data;
}

void fanout_emit(fanout_list *l, const char *room, const char *event, const cJSON *data,
                 const char *except)
{
	fanout_op *o = push(l, FANOUT_ROOM);
	o->target = strdup(room);
	o->pkt = event_packet(event, data, 0);
	o->except = str_or_null(except);
}

void fanout_emit_ref(fanout_list *l, const char *room, const char *event, const cJSON *data)
{
	fanout_op *o = push(l, FANOUT_ROOM);
	o->target = strdup(room);
	o->ref_event = event;
	o->ref_data = data;
}

void fanout_ack(fanout_list *l, const char *gw, const char *sid, const char *nsp, long long ack,
                const cJSON *arg)
{
	if (!gw || !sid)
		return;
	fanout_op *o = push(l, FANOUT_SID);
	o->gw = strdup(gw);
	o->target = strdup(sid);
	buf b;
	buf_init(&b, 0);
	int rc = buf_append_byte(&b, '3');
	if (nsp && strcmp(nsp, "/") != 0) {
		rc |= buf_append_cstr(&b, nsp);
		rc |= buf_append_byte(&b, ',');
	}
	rc |= buf_append_u64(&b, (uint64_t)ack);
	rc |= buf_append_byte(&b, '[');
	if (arg)
		rc |= json_append(&b, arg);
	rc |= buf_append(&b, "]", 2); /* with the terminator */
	if (rc)
		buf_dispose(&b);
	o->pkt = b.data;
}

void fanout_emit_sid(fanout_list *l, const char *sid, const char *event, const cJSON *data)
{
	fanout_op *o = push(l, FANOUT_SID);
	o->target = strdup(sid);
	o->pkt = event_packet(event, data, 0);
}

void fanout_sync(fanout_list *l, const char *gw, const char *sid, const char *prefix,
                 const cJSON *rooms)
{
	if (!gw || !sid)
		return;
	fanout_op *o = push(l, FANOUT_SYNC);
	o->gw = strdup(gw);
	o->target = strdup(sid);
	o->room = strdup(prefix);
	o->pkt = json_print(rooms);
}

void fanout_join(fanout_list *l, const char *gw, const char *sid, const char *room)
{
	if (!gw || !sid)
		return;
	fanout_op *o = push(l, FANOUT_JOIN);
	o->gw = strdup(gw);
	o->target = strdup(sid);
	o->room = strdup(room);
}

/* ---- steps ---- */

void fanout_add_step(fanout_list *l, fanout_step_fn *run, void (*dispose)(void *arg), void *arg)
{
	fanout_op *o = push(l, FANOUT_STEP);
	o->step = calloc(1, sizeof(*o->step));
	o->step->run = run;
	o->step->dispose = dispose;
	o->step->arg = arg;
	fanout_init(&o->step->sub);
}

static void copy_att(fanout_op *o, const slice *att, int natt)
{
	if (natt <= 0)
		return;
	o->att = calloc((size_t)natt, sizeof(char *));
	o->att_len = calloc((size_t)natt, sizeof(size_t));
	for (int i = 0; i < natt; i++) {
		o->att[i] = malloc(att[i].len ? att[i].len : 1);
		if (att[i].len)
			memcpy(o->att[i], att[i].base, att[i].len);
		o->att_len[i] = att[i].len;
	}
	o->natt = natt;
}

void fanout_step_emit(fanout_step *st, const char *const *gws, int ngws, const char *room,
                      const char *event, const cJSON *data, const slice *att, int natt,
                      const char *except)
{
	if (ngws <= 0)
		return;
	fanout_op *o = push(&st->sub, FANOUT_ROOM);
	o->target = strdup(room);
	o->pkt = event_packet(event, data, natt);
	o->except = str_or_null(except);
	o->gws = calloc((size_t)ngws, sizeof(char *));
	for (int i = 0; i < ngws; i++)
		o->gws[o->ngws++] = strdup(gws[i]);
	copy_att(o, att, natt);
}

void fanout_step_emit_sid(fanout_step *st, const char *gw, const char *sid, const char *event,
                          const cJSON *data)
{
	fanout_op *o = push(&st->sub, FANOUT_SID);
	o->gw = strdup(gw);
	o->target = strdup(sid);
	o->pkt = event_packet(event, data, 0);
}

static void step_room_op(fanout_step *st, int type, const char *gw, const char *sid,
                         const char *room)
{
	fanout_op *o = push(&st->sub, type);
	o->gw = strdup(gw);
	o->target = strdup(sid);
	o->room = strdup(room);
}

void fanout_step_join(fanout_step *st, const char *gw, const char *sid, const char *room)
{
	step_room_op(st, FANOUT_JOIN, gw, sid, room);
}

void fanout_step_leave(fanout_step *st, const char *gw, const char *sid, const char *room)
{
	step_room_op(st, FANOUT_LEAVE, gw, sid, room);
}

/* ---- publishing ---- */

static void xadd(const char *gw, const fanout_op *o)
{
	static const char *const ops[] = {"room", "sid", "join", "rooms", "leave"};
	static const char *const att_names[] = {"att0",  "att1",  "att2",  "att3", "att4",  "att5",
	                                        "att6",  "att7",  "att8",  "att9", "att10", "att11",
	                                        "att12", "att13", "att14", "att15"};
	char key[400];
	snprintf(key, sizeof(key), "%s:gw:%s:dlv", wk.cfg.redis_prefix, gw);
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XADD");
	redis_arg_str(&a, key);
	redis_arg_str(&a, "MAXLEN");
	redis_arg_str(&a, "~");
	redis_arg_str(&a, "100000");
	redis_arg_str(&a, "*");
	redis_arg_str(&a, "v");
	redis_arg_str(&a, "1");
	redis_arg_str(&a, "op");
	redis_arg_str(&a, ops[o->type]);
	redis_arg_str(&a, "target");
	redis_arg_str(&a, o->target);
	if (o->type == FANOUT_SYNC) {
		redis_arg_str(&a, "prefix");
		redis_arg_str(&a, o->room);
		redis_arg_str(&a, "rooms");
		redis_arg_str(&a, o->pkt);
	} else if (o->pkt) {
		redis_arg_str(&a, "pkt");
		redis_arg_str(&a, o->pkt);
	}
	if (o->room && o->type != FANOUT_SYNC) {
		redis_arg_str(&a, "room");
		redis_arg_str(&a, o->room);
	}
	if (o->except) {
		redis_arg_str(&a, "except");
		redis_arg_str(&a, o->except);
	}
	for (int i = 0; i < o->natt && i < (int)(sizeof(att_names) / sizeof(*att_names)); i++) {
		redis_arg_str(&a, att_names[i]);
		redis_arg(&a, o->att[i], o->att_len[i]);
	}
	redis_send(wk.rc, NULL, NULL, &a);
	wk.m.deliveries++;
}

/* Every entry goes out in the order it was made; a step's deliveries at
 * the step's place. */
static void send_ops(fanout_list *l)
{
	for (int i = 0; i < l->n; i++) {
		fanout_op *o = &l->ops[i];
		if (o->type == FANOUT_STEP) {
			send_ops(&o->step->sub);
		} else if (o->type == FANOUT_ROOM) {
			const fanout_op *reg = o->same_as ? &l->ops[o->same_as - 1] : o;
			if (reg->ngws > 0 && !o->pkt && o->ref_data)
				o->pkt = event_packet(o->ref_event, o->ref_data, 0);
			for (int k = 0; k < reg->ngws; k++)
				xadd(reg->gws[k], o);
		} else if (o->gw)
			xadd(o->gw, o);
		/* else: a socket no gateway holds any more; nothing to deliver */
	}
}

typedef struct lookup {
	fanout_list *l;
	int i;
} lookup;

static int needs_lookup(const fanout_op *o)
{
	return o->type == FANOUT_ROOM || (o->type == FANOUT_SID && !o->gw);
}

/* The gateways the registry look-ups found that are not alive any more
 * (a step's deliveries name theirs, and are kept). */
static void drop_dead(fanout_list *l)
{
	for (int i = 0; i < l->n; i++) {
		fanout_op *o = &l->ops[i];
		if (o->type != FANOUT_ROOM || o->same_as)
			continue;
		int kept = 0;
		for (int k = 0; k < o->ngws; k++) {
			if (is_live(o->gws[k], strlen(o->gws[k])))
				o->gws[kept++] = o->gws[k];
			else
				free(o->gws[k]);
		}
		o->ngws = kept;
	}
}

/* One answer (or the sending itself) is accounted for; after the last,
 * everything goes out, or the publish fails. The list may be freed by
 * the callback: nothing touches it afterwards. */
static void release(fanout_list *l)
{
	if (--l->waiting > 0)
		return;
	if (l->failed) {
		l->cb(l->arg, 0);
		return;
	}
	drop_dead(l);
	send_ops(l);
	l->cb(l->arg, 1);
}

static void on_registry(redis_conn *rc, const redisReply *r, void *arg)
{
	lookup *lk = arg;
	fanout_list *l = lk->l;
	fanout_op *o = &l->ops[lk->i];
	free(lk);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		l->failed = 1;
	} else if (o->type == FANOUT_SID) {
		/* The session hash names the gateway holding the socket. */
		if (r->type == REDIS_REPLY_STRING)
			o->gw = strndup(r->str, r->len);
	} else if (r->type == REDIS_REPLY_ARRAY) {
		o->gws = calloc(r->elements / 2 + 1, sizeof(char *));
		for (size_t k = 0; k + 1 < r->elements; k += 2) {
			const redisReply *g = r->element[k], *cnt = r->element[k + 1];
			if (g->type != REDIS_REPLY_STRING || cnt->type != REDIS_REPLY_STRING)
				continue;
			/* Liveness is checked once the live set is read (drop_dead). */
			if (atoll(cnt->str) > 0)
				o->gws[o->ngws++] = strndup(g->str, g->len);
		}
	}
	release(l);
}

typedef struct step_call {
	fanout_step *st;
	fanout_reply_fn *cb;
	void *arg;
} step_call;

static void on_step_reply(redis_conn *rc, const redisReply *r, void *arg)
{
	step_call *c = arg;
	fanout_list *l = c->st->l;
	if (r)
		c->cb(c->st, r, c->arg);
	else
		l->failed = 1;
	free(c);
	release(l);
}

int fanout_step_cmd(fanout_step *st, fanout_reply_fn *cb, void *arg, const redis_argv *a)
{
	fanout_list *l = st->l;
	step_call *c = malloc(sizeof(*c));
	if (!c) {
		l->failed = 1;
		return -1;
	}
	c->st = st;
	c->cb = cb;
	c->arg = arg;
	l->waiting++;
	if (redis_send(wk.rc, on_step_reply, c, a) < 0) {
		/* The connection is down: those sent will answer NULL. */
		l->waiting--;
		l->failed = 1;
		free(c);
		return -1;
	}
	return 0;
}

static void on_publish_live(redis_conn *rc, const redisReply *r, void *arg)
{
	fanout_list *l = arg;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		l->failed = 1;
	} else {
		for (int i = 0; i < nlive; i++)
			free(live[i]);
		nlive = 0;
		for (size_t i = 0; i < r->elements && nlive < MAX_LIVE; i++)
			if (r->element[i]->type == REDIS_REPLY_STRING)
				live[nlive++] = strndup(r->element[i]->str, r->element[i]->len);
	}
	release(l);
}

static int send_lookup(fanout_list *l, int i)
{
	fanout_op *o = &l->ops[i];
	char key[400];
	lookup *lk = malloc(sizeof(*lk));
	if (!lk)
		return -1;
	lk->l = l;
	lk->i = i;
	int rc;
	if (o->type == FANOUT_ROOM) {
		snprintf(key, sizeof(key), "%s:room:%s", wk.cfg.redis_prefix, o->target);
		const char *argv[] = {"HGETALL", key};
		size_t lens[] = {7, strlen(key)};
		rc = redis_cmd(wk.rc, on_registry, lk, 2, argv, lens);
	} else {
		snprintf(key, sizeof(key), "%s:sid:%s", wk.cfg.redis_prefix, o->target);
		const char *argv[] = {"HGET", key, "gw"};
		size_t lens[] = {4, strlen(key), 2};
		rc = redis_cmd(wk.rc, on_registry, lk, 3, argv, lens);
	}
	if (rc < 0)
		free(lk);
	return rc;
}

void fanout_publish(fanout_list *l, void (*cb)(void *arg, int ok), void *arg)
{
	l->cb = cb;
	l->arg = arg;
	l->failed = 0;
	if (!redis_conn_up(wk.rc)) {
		cb(arg, 0);
		return;
	}
	/* One look-up per room op and the steps' commands, pipelined in the
	 * list's order; the entries go out when the last answer is in, so
	 * their order is the order they were made. The count is held at one
	 * while sending, so no answer can finish the publish early. */
	l->waiting = 1;
	/* A room is looked up once per publish, however many ops it has (a
	 * batch holds many updates to each chat's user): all the look-ups are
	 * one pipelined snapshot of the registry anyway. The keys are the ops'
	 * own target strings. */
	map rooms;
	map_init(&rooms);
	int rooms_looked_up = 0;
	for (int i = 0; i < l->n && !l->failed; i++) {
		fanout_op *o = &l->ops[i];
		if (o->type == FANOUT_ROOM) {
			slice k = slice_cstr(o->target);
			const fanout_op *first = map_get(&rooms, k);
			if (first) {
				o->same_as = (int)(first - l->ops) + 1;
				continue;
			}
			/* Out of memory only costs the sharing. */
			(void)map_put(&rooms, k, o);
			rooms_looked_up = 1;
		}
		if (o->type == FANOUT_STEP) {
			o->step->l = l;
			o->step->run(o->step, o->step->arg);
		} else if (needs_lookup(o)) {
			l->waiting++;
			if (send_lookup(l, i) < 0) {
				/* The connection is down: those sent will answer NULL. */
				l->waiting--;
				l->failed = 1;
			}
		}
	}
	map_dispose(&rooms);
	/* Which of the registries' gateways are alive is read after them, in
	 * the same pipeline: a gateway refreshes its liveness before it
	 * registers a room, so every gateway the look-ups found live is in
	 * this answer. A set cached by a timer missed gateways that had come
	 * (or come back) since its last refresh, and their members' events
	 * were dropped until the next one (seen after a Redis restart). */
	if (rooms_looked_up && !l->failed) {
		l->waiting++;
		if (send_live(on_publish_live, l) < 0) {
			l->waiting--;
			l->failed = 1;
		}
	}
	release(l);
}
