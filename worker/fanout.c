#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "wk.h"

#define MAX_LIVE 1024

/* Gateways seen alive recently (P:gateways scores within 15 s). */
static char *live[MAX_LIVE];
static int nlive;

static int is_live(const char *gw, size_t len)
{
	for (int i = 0; i < nlive; i++)
		if (strlen(live[i]) == len && memcmp(live[i], gw, len) == 0)
			return 1;
	return 0;
}

static void on_live(redis_conn *rc, const redisReply *r, void *arg)
{
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return;
	for (int i = 0; i < nlive; i++)
		free(live[i]);
	nlive = 0;
	for (size_t i = 0; i < r->elements && nlive < MAX_LIVE; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			live[nlive++] = strndup(r->element[i]->str, r->element[i]->len);
}

void fanout_tick(void)
{
	char key[300], min[32];
	snprintf(key, sizeof(key), "%s:gateways", wk.cfg.redis_prefix);
	snprintf(min, sizeof(min), "%llu", (unsigned long long)time(NULL) * 1000 - 15000);
	const char *argv[] = {"ZRANGEBYSCORE", key, min, "+inf"};
	size_t lens[] = {13, strlen(key), strlen(min), 4};
	redis_cmd(wk.rc, on_live, NULL, 4, argv, lens);
}

void fanout_init(fanout_list *l)
{
	memset(l, 0, sizeof(*l));
}

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

/* 2["event",data] on the root namespace. */
static char *event_packet(const char *event, const cJSON *data)
{
	cJSON *arr = cJSON_CreateArray();
	cJSON_AddItemToArray(arr, cJSON_CreateString(event));
	cJSON_AddItemToArray(arr, cJSON_Duplicate(data, 1));
	char *json = json_print(arr);
	cJSON_Delete(arr);
	size_t n = strlen(json);
	char *pkt = malloc(n + 2);
	pkt[0] = '2';
	memcpy(pkt + 1, json, n + 1);
	free(json);
	return pkt;
}

void fanout_emit(fanout_list *l, const char *room, const char *event, const cJSON *data,
                 const char *except)
{
	fanout_op *o = push(l, FANOUT_ROOM);
	o->target = strdup(room);
	o->pkt = event_packet(event, data);
	o->except = str_or_null(except);
}

void fanout_ack(fanout_list *l, const char *gw, const char *sid, const char *nsp, long long ack,
                const cJSON *arg)
{
	if (!gw || !sid)
		return;
	fanout_op *o = push(l, FANOUT_SID);
	o->gw = strdup(gw);
	o->target = strdup(sid);
	cJSON *arr = cJSON_CreateArray();
	cJSON_AddItemToArray(arr, cJSON_Duplicate(arg, 1));
	char *json = json_print(arr);
	cJSON_Delete(arr);
	buf b;
	buf_init(&b, 0);
	buf_append_byte(&b, '3');
	if (nsp && strcmp(nsp, "/") != 0) {
		buf_append_cstr(&b, nsp);
		buf_append_byte(&b, ',');
	}
	buf_append_u64(&b, (uint64_t)ack);
	buf_append_cstr(&b, json);
	buf_append_byte(&b, '\0');
	o->pkt = b.data;
	free(json);
}

void fanout_emit_sid(fanout_list *l, const char *sid, const char *event, const cJSON *data)
{
	fanout_op *o = push(l, FANOUT_SID);
	o->target = strdup(sid);
	o->pkt = event_packet(event, data);
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

static void xadd(const char *gw, const fanout_op *o)
{
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
	static const char *const ops[] = {"room", "sid", "join", "rooms"};
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
	redis_send(wk.rc, NULL, NULL, &a);
	wk.m.deliveries++;
}

/* All look-ups answered: every entry goes out in the order it was made. */
static void send_all(fanout_list *l)
{
	for (int i = 0; i < l->n; i++) {
		fanout_op *o = &l->ops[i];
		if (o->type == FANOUT_ROOM)
			for (int k = 0; k < o->ngws; k++)
				xadd(o->gws[k], o);
		else if (o->gw)
			xadd(o->gw, o);
		/* else: a socket no gateway holds any more; nothing to deliver */
	}
	l->cb(l->arg, 1);
}

typedef struct lookup {
	fanout_list *l;
	int i;
} lookup;

static int needs_lookup(const fanout_op *o)
{
	return o->type == FANOUT_ROOM || (o->type == FANOUT_SID && !o->gw);
}

static void finish(fanout_list *l)
{
	if (l->failed)
		l->cb(l->arg, 0);
	else
		send_all(l);
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
			/* Gateways that stopped refreshing their liveness are skipped. */
			if (atoll(cnt->str) > 0 && is_live(g->str, g->len))
				o->gws[o->ngws++] = strndup(g->str, g->len);
		}
	}
	if (--l->waiting == 0)
		finish(l);
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
	int rooms = 0;
	for (int i = 0; i < l->n; i++)
		rooms += needs_lookup(&l->ops[i]);
	if (rooms == 0) {
		send_all(l);
		return;
	}
	/* One look-up per room op, pipelined; the entries go out when the last
	 * answer is in, so their order is the order they were made. */
	l->waiting = rooms;
	for (int i = 0; i < l->n; i++) {
		fanout_op *o = &l->ops[i];
		if (!needs_lookup(o))
			continue;
		char key[400];
		int rc;
		lookup *lk = malloc(sizeof(*lk));
		lk->l = l;
		lk->i = i;
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
		if (rc < 0) {
			/* The connection is down: those sent will answer NULL; the
			 * rest never will. */
			free(lk);
			l->failed = 1;
			l->waiting -= rooms;
			for (int k = 0; k < i; k++)
				l->waiting += needs_lookup(&l->ops[k]);
			if (l->waiting == 0)
				finish(l);
			return;
		}
	}
}
