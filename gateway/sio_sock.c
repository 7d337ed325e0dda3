#include "sio_sock.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "call.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/rand.h"
#include "gw.h"
#include "sio.h"

#define MAX_NSP 16

uint64_t sio_count;

typedef struct sio_pending sio_pending;
typedef struct sio_bin sio_bin;

/* Socket.IO state of one Engine.IO session. */
struct sio_client {
	eio_sock *e;
	sio_sock *socks;
	sio_pending *pending; /* authentications waiting on Redis */
	wheel_timer ct;       /* connect timeout, until a namespace is joined */
	sio_bin *bin;         /* a binary packet being received; NULL mostly */
};

/* Both are per connection: 56 and 120 bytes are chunks of 64 and 128 (see
 * eio_sock.h). */
_Static_assert(sizeof(sio_client) <= 56, "sio_client: mind its malloc chunk");
_Static_assert(sizeof(sio_sock) <= 120, "sio_sock: mind its malloc chunk");

/* A BINARY_EVENT/BINARY_ACK waiting for its attachments: allocated only
 * while one is in flight, so that the other sockets do not carry it. */
struct sio_bin {
	sio_client *cl;
	wheel_timer at; /* the attachments must arrive in time */
	buf packet;
	buf *att;
	uint32_t natt, want_att;
	size_t att_bytes;
};

/* A token verified locally whose revocation keys are being read. */
struct sio_pending {
	sio_client *cl; /* NULL once the client is gone */
	sio_sock *s;    /* user-join: the socket to authenticate; NULL: CONNECT */
	sio_pending *next;
	char nsp[64];
	jwt_claims claims;
	uint64_t tok_hash; /* of the token being checked; 0: none */
	int valid;
	char *auth_json; /* CONNECT: the auth object, echoed in conformance mode */
	char *data;      /* user-join: arguments to forward */
	int64_t ack;
};

static char *namespaces[MAX_NSP];
static int nnamespaces;
static int conformance;

static void client_close_sock(sio_sock *s, int notify_client, const char *reason);

int sio_namespaces_init(const char *list, int conf, const char **err)
{
	conformance = conf;
	nnamespaces = 0;
	namespaces[nnamespaces++] = "/";
	if (conf)
		namespaces[nnamespaces++] = "/custom";
	for (const char *p = list; p && *p;) {
		const char *semi = strchr(p, ';');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);
		if (len) {
			if (p[0] != '/' || len >= 64 || memchr(p, ',', len)) {
				*err = "a namespace must start with '/', be under 64 bytes, "
				       "without ','";
				return -1;
			}
			if (nnamespaces == MAX_NSP) {
				*err = "too many namespaces";
				return -1;
			}
			namespaces[nnamespaces++] = strndup(p, len);
		}
		p = semi ? semi + 1 : NULL;
	}
	return 0;
}

/* The configured namespace named nsp (its one copy, which sockets point
 * at rather than carry), or NULL. */
static const char *nsp_find(slice nsp)
{
	for (int i = 0; i < nnamespaces; i++)
		if (slice_eq_cstr(nsp, namespaces[i]))
			return namespaces[i];
	return NULL;
}

static int nsp_known(slice nsp)
{
	return nsp_find(nsp) != NULL;
}

static sio_sock *find_sock(sio_client *cl, slice nsp)
{
	for (sio_sock *s = cl->socks; s; s = s->next)
		if (slice_eq_cstr(nsp, s->nsp))
			return s;
	return NULL;
}

/* Sends one Socket.IO packet (already encoded) to a socket's session. */
static void send_text(sio_client *cl, slice text)
{
	eio_send(cl->e, text, 0);
}

static void send_buf(sio_client *cl, buf *b)
{
	send_text(cl, buf_slice(b));
	buf_reset(b);
}

static void count_out(int type)
{
	if (type >= 0 && type < 7)
		gw.m.pkts_out[type]++;
}

/* ---- server-to-client calls ---- */

/* A server-to-client call waiting for the client's ack. */
typedef struct sio_call {
	struct sio_call *next;
	int64_t ack;
	char *reply_gw, *call_id;
} sio_call_t;

/* Sends the answer of a call to the gateway that took the request. */
static void call_answer(sio_call_t *c, slice data, const char *error)
{
	slice f[] = {SLICE_LIT("v"),
	             SLICE_LIT("1"),
	             SLICE_LIT("op"),
	             SLICE_LIT("reply"),
	             SLICE_LIT("target"),
	             slice_cstr(c->call_id),
	             error ? SLICE_LIT("error") : SLICE_LIT("data"),
	             error ? slice_cstr(error) : data};
	if (strcmp(c->reply_gw, bus_gateway_id()) == 0) {
		/* Same gateway: no round trip through Redis. */
		call_reply(slice_cstr(c->call_id), error ? SLICE_NULL : data,
		           error ? slice_cstr(error) : SLICE_NULL);
		return;
	}
	bus_deliver(slice_cstr(c->reply_gw), f, 4);
}

static void call_free_one(sio_call_t *c)
{
	free(c->reply_gw);
	free(c->call_id);
	free(c);
}

/* An ACK packet: the answer to one of our calls, if it is one. */
static int call_acked(sio_sock *s, int64_t ack, cJSON *args)
{
	for (sio_call_t **pp = &s->calls; *pp; pp = &(*pp)->next) {
		sio_call_t *c = *pp;
		if (c->ack != ack)
			continue;
		*pp = c->next;
		/* One argument answers with its value, several with the list. */
		cJSON *v = cJSON_GetArraySize(args) == 1 ? cJSON_GetArrayItem(args, 0) : args;
		char *json = json_print(v);
		call_answer(c, slice_cstr(json ? json : "null"), NULL);
		free(json);
		call_free_one(c);
		return 1;
	}
	return 0;
}

void sio_call(slice sid, slice event, slice data, slice reply_gw, slice call_id)
{
	sio_call_t *c = calloc(1, sizeof(*c));
	c->reply_gw = strndup(reply_gw.base ? reply_gw.base : "", reply_gw.len);
	c->call_id = strndup(call_id.base ? call_id.base : "", call_id.len);
	sio_sock *s = map_get(&gw.sio_by_sid, sid);
	if (!s || !event.len) {
		call_answer(c, SLICE_NULL, CALL_DISCONNECTED);
		call_free_one(c);
		return;
	}
	c->ack = ++s->ack_seq;
	buf args, b;
	buf_init(&args, 0);
	buf_init(&b, 0);
	buf_append_byte(&args, '[');
	buf_append_slice(&args, data.len ? data : SLICE_LIT("null"));
	buf_append_byte(&args, ']');
	sio_encode_event(&b, slice_cstr(s->nsp), c->ack, event, buf_slice(&args));
	count_out(SIO_EVENT);
	send_buf(s->cl, &b);
	buf_dispose(&args);
	buf_dispose(&b);
	c->next = s->calls;
	s->calls = c;
}

/* ---- connect ---- */

static void exp_fire(wheel_timer *t)
{
	sio_sock *s = wheel_owner(t, sio_sock, exp_timer);
	/* Checked again: the wall clock may have been set back since the
	 * timer was armed, and the wheel's horizon is thousands of years. */
	int64_t left = s->exp - clock_wall_s();
	if (left > 0) {
		gw_timer_start(&s->exp_timer, exp_fire, (uint64_t)left * 1000);
		return;
	}
	log_info("sid=%s user=%s token expired: disconnecting", s->sid, s->user);
	client_close_sock(s, 1, "token expired");
}

/* The socket is closed when the token it last authenticated with expires. */
static void set_expiry(sio_sock *s, const jwt_claims *c)
{
	gw_timer_cancel(&s->exp_timer);
	s->exp = 0;
	if (c->flags & JWT_HAS_EXP) {
		int64_t left = c->exp - clock_wall_s();
		s->exp = c->exp;
		gw_timer_start(&s->exp_timer, exp_fire, left > 0 ? (uint64_t)left * 1000 : 0);
	}
}

/* The socket is c's user from now on, by the token hashed as tok_hash. */
static void set_user(sio_sock *s, const jwt_claims *c, uint64_t tok_hash)
{
	char rname[JWT_MAX_ID + 8];
	s->tok_hash = tok_hash;
	if (s->user && strcmp(s->user, c->id) == 0) {
		/* user-join with the CONNECT's user, as Open WebUI's front end
		 * always sends it: the socket is in its room and its session
		 * registered already. Leaving and registering again would cost
		 * ten Redis commands (half of a connection's) and move the
		 * session's connected_at; only the token's expiry is new. */
		set_expiry(s, c);
		return;
	}
	if (s->user) {
		/* A socket re-authenticated as someone else leaves the old user's
		 * room (Open WebUI kept it there: catalogue 9 #5). */
		snprintf(rname, sizeof(rname), "user:%s", s->user);
		rooms_leave(&s->rooms, slice_cstr(rname));
		bus_session_del(s);
		free(s->user);
	}
	s->user = strdup(c->id);
	s->flags |= SIO_S_AUTHED;
	snprintf(rname, sizeof(rname), "user:%s", s->user);
	rooms_join(&s->rooms, s, slice_cstr(rname));
	set_expiry(s, c);
	bus_session_add(s);
}

static void emit_auth_echo(sio_sock *s, const char *auth_json)
{
	buf b;
	buf_init(&b, 0);
	const char *a = auth_json ? auth_json : "{}";
	buf tmp;
	buf_init(&tmp, 0);
	buf_append_byte(&tmp, '[');
	buf_append_cstr(&tmp, a);
	buf_append_byte(&tmp, ']');
	sio_encode_event(&b, slice_cstr(s->nsp), -1, SLICE_LIT("auth"), buf_slice(&tmp));
	count_out(SIO_EVENT);
	send_buf(s->cl, &b);
	buf_dispose(&tmp);
	buf_dispose(&b);
}

static void finish_connect(sio_client *cl, const char *nsp, const jwt_claims *claims,
                           uint64_t tok_hash, const char *auth_json)
{
	sio_sock *s = calloc(1, sizeof(*s));
	if (!s) {
		eio_close(cl->e, "out of memory");
		return;
	}
	s->cl = cl;
	s->nsp = nsp_find(slice_cstr(nsp));
	if (!s->nsp) { /* checked at CONNECT; the list does not change */
		free(s);
		eio_close(cl->e, "unknown namespace");
		return;
	}
	rand_id(s->sid, 20);
	map_put(&gw.sio_by_sid, slice_make(s->sid, 20), s);
	s->next = cl->socks;
	cl->socks = s;
	sio_count++;
	gw_timer_cancel(&cl->ct);
	buf b;
	buf_init(&b, 0);
	sio_encode_connect_ok(&b, slice_cstr(s->nsp), slice_make(s->sid, 20));
	count_out(SIO_CONNECT);
	send_buf(cl, &b);
	buf_dispose(&b);
	if (claims) {
		set_user(s, claims, tok_hash);
		bus_ingress(s, "connect", SLICE_NULL, SLICE_NULL, -1, NULL, 0, SLICE_NULL);
	}
	log_debug("sid=%s eio=%s nsp=%s user=%s connected", s->sid, cl->e->sid, s->nsp,
	          s->user ? s->user : "-");
	if (conformance)
		emit_auth_echo(s, auth_json);
}

static void pending_unlink(sio_pending *p)
{
	if (!p->cl)
		return;
	for (sio_pending **pp = &p->cl->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
}

static void pending_free(sio_pending *p)
{
	free(p->auth_json);
	free(p->data);
	free(p);
}

static void forward_user_join(sio_sock *s, sio_pending *p)
{
	bus_ingress(s, "event", SLICE_LIT("user-join"), slice_cstr(p->data ? p->data : "[]"),
	            p->ack, NULL, 0, SLICE_NULL);
}

static void auth_checked(void *arg, int ok, const char *why)
{
	sio_pending *p = arg;
	pending_unlink(p);
	if (!p->cl) {
		pending_free(p);
		return;
	}
	if (!ok && p->valid) {
		gw.m.handshake_fail[HS_FAIL_AUTH]++;
		log_info("user=%s token refused: %s", p->claims.id, why);
	}
	int good = ok && p->valid;
	if (!p->s && why == BUS_TOO_MANY) {
		/* Refused outright, with the reason, rather than let in as anonymous. */
		buf b;
		buf_init(&b, 0);
		sio_encode_connect_error(&b, slice_cstr(p->nsp), "too many connections");
		count_out(SIO_CONNECT_ERROR);
		send_buf(p->cl, &b);
		buf_dispose(&b);
		gw.m.handshake_fail[HS_FAIL_TOO_MANY]++;
	} else if (!p->s) {
		finish_connect(p->cl, p->nsp, good ? &p->claims : NULL, p->tok_hash, p->auth_json);
	} else if (good) {
		set_user(p->s, &p->claims, p->tok_hash);
		forward_user_join(p->s, p);
	}
	pending_free(p);
}

/* Never 0, which means "no token". The hash is map.h's, keyed per process:
 * nobody outside can aim at it (and a match would only re-admit a socket
 * as the user it already is). */
static uint64_t token_hash(slice t)
{
	uint64_t h = map_hash(t);
	return h ? h : 1;
}

/* Verifies a token (maybe absent) and continues in auth_checked. */
static void start_auth(sio_client *cl, sio_pending *p, const cJSON *token)
{
	const char *err = "no token";
	p->cl = cl;
	p->next = cl->pending;
	cl->pending = p;
	if (cJSON_IsString(token) && *gw.cfg.secret) {
		slice t = slice_cstr(token->valuestring);
		p->tok_hash = token_hash(t);
		if (jwt_verify_hs256(t, gw.cfg.secret, strlen(gw.cfg.secret), clock_wall_s(),
		                     gw.cfg.require_exp, &p->claims, &err) == 0) {
			p->valid = 1;
			bus_check_revoked(&p->claims, auth_checked, p);
			return;
		}
		gw.m.handshake_fail[HS_FAIL_AUTH]++;
		log_info("eio=%s token refused: %s", cl->e->sid, err);
	}
	auth_checked(p, 0, err);
}

static void on_connect(sio_client *cl, const sio_packet *pk)
{
	char nsp[64];
	buf b;
	if (!nsp_known(pk->nsp) || pk->nsp.len >= sizeof(nsp)) {
		buf_init(&b, 0);
		sio_encode_connect_error(&b, pk->nsp.len < 64 ? pk->nsp : SLICE_LIT("/"),
		                         "Invalid namespace");
		count_out(SIO_CONNECT_ERROR);
		send_buf(cl, &b);
		buf_dispose(&b);
		return;
	}
	memcpy(nsp, pk->nsp.base, pk->nsp.len);
	nsp[pk->nsp.len] = '\0';
	if (find_sock(cl, pk->nsp)) {
		log_debug("eio=%s second CONNECT to %s ignored", cl->e->sid, nsp);
		return;
	}
	sio_pending *p = calloc(1, sizeof(*p));
	if (!p) {
		eio_close(cl->e, "out of memory");
		return;
	}
	snprintf(p->nsp, sizeof(p->nsp), "%s", nsp);
	cJSON *auth = NULL;
	if (pk->data.len)
		auth = json_parse(pk->data.base, pk->data.len);
	if (auth && conformance)
		p->auth_json = json_print(auth);
	start_auth(cl, p, cJSON_GetObjectItemCaseSensitive(auth, "token"));
	cJSON_Delete(auth);
}

/* ---- events ---- */

/* The key that orders an event: the channel, chat, document or note it is
 * about, else its user. A document id note_{id} is Open WebUI's store
 * spelling of note:{id}: both are keyed doc:note:{id}, so every event of
 * one document is applied by one worker, in order. */
static void shard_key(const cJSON *arg0, const sio_sock *s, char *out, size_t cap)
{
	static const struct {
		const char *field, *prefix;
	} keys[] = {{"channel_id", "channel:"},
	            {"chat_id", "chat:"},
	            {"document_id", "doc:"},
	            {"note_id", "note:"}};
	for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(arg0, keys[i].field);
		if (cJSON_IsString(v) && strlen(v->valuestring) < 200) {
			const char *id = v->valuestring;
			if (strcmp(keys[i].field, "document_id") == 0 &&
			    strncmp(id, "note_", 5) == 0)
				snprintf(out, cap, "doc:note:%s", id + 5);
			else
				snprintf(out, cap, "%s%s", keys[i].prefix, id);
			return;
		}
	}
	snprintf(out, cap, "user:%s", s->user ? s->user : "");
}

static void conformance_event(sio_sock *s, const char *name, cJSON *args, int64_t id, uint32_t natt,
                              const slice *att)
{
	char *txt = json_print(args);
	buf b;
	buf_init(&b, 0);
	if (strcmp(name, "message") == 0) {
		buf data;
		buf_init(&data, 0);
		buf_append_cstr(&data, "[\"message-back\"");
		if (cJSON_GetArraySize(args) > 0) {
			buf_append_byte(&data, ',');
			buf_append(&data, txt + 1, strlen(txt) - 1);
		} else {
			buf_append_byte(&data, ']');
		}
		sio_encode(&b, natt ? SIO_BINARY_EVENT : SIO_EVENT, slice_cstr(s->nsp), -1, natt,
		           buf_slice(&data));
		buf_dispose(&data);
	} else if (strcmp(name, "message-with-ack") == 0 && id >= 0) {
		sio_encode(&b, natt ? SIO_BINARY_ACK : SIO_ACK, slice_cstr(s->nsp), id, natt,
		           slice_cstr(txt));
	}
	if (b.len) {
		send_buf(s->cl, &b);
		for (uint32_t i = 0; i < natt; i++)
			eio_send(s->cl->e, att[i], 1);
	}
	buf_dispose(&b);
	free(txt);
}

/* Removes credentials and forged identity fields from the first argument
 * before it leaves the gateway: the worker gets the verified identity in
 * the entry, never a token or a client-chosen user id. */
static void scrub(cJSON *arg0)
{
	static const char *const fields[] = {"auth", "user_id", "session_id", "socket_id", "token"};
	if (!cJSON_IsObject(arg0))
		return;
	for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++)
		cJSON_DeleteItemFromObjectCaseSensitive(arg0, fields[i]);
}

static void on_user_join(sio_sock *s, const cJSON *auth, const char *data, int64_t ack)
{
	const cJSON *token = cJSON_GetObjectItemCaseSensitive(auth, "token");
	/*
	 * Open WebUI's front end sends user-join with the very token its
	 * CONNECT carried, a round trip later. That token was verified and its
	 * revocation keys read for this socket then, and the socket is that
	 * user, so the event goes on as it is: checking it again was a sixth
	 * of the gateway's user-space work per connection (HMAC, payload
	 * parse, a Redis round trip). An expired token, another token, or one
	 * arriving while another check is in flight (whose order must hold)
	 * takes the full check.
	 */
	if (s->user && s->tok_hash && !s->cl->pending && cJSON_IsString(token) &&
	    (!s->exp || clock_wall_s() < s->exp) &&
	    token_hash(slice_cstr(token->valuestring)) == s->tok_hash) {
		gw.m.token_repeats++;
		bus_ingress(s, "event", SLICE_LIT("user-join"), slice_cstr(data ? data : "[]"), ack,
		            NULL, 0, SLICE_NULL);
		return;
	}
	sio_pending *p = calloc(1, sizeof(*p));
	if (!p)
		return;
	p->s = s;
	p->ack = ack;
	p->data = data ? strdup(data) : NULL;
	snprintf(p->nsp, sizeof(p->nsp), "%s", s->nsp);
	start_auth(s->cl, p, token);
}

static void dispatch_event(sio_client *cl, const sio_packet *pk, const slice *att, uint32_t natt)
{
	sio_sock *s = find_sock(cl, pk->nsp);
	if (!s) {
		log_debug("eio=%s event for unconnected namespace dropped", cl->e->sid);
		return;
	}
	cJSON *data = json_parse(pk->data.base, pk->data.len);
	const char *err = NULL;
	if (!data || (natt && sio_check_placeholders(data, natt, &err) < 0)) {
		gw.m.closed_bad_input++;
		log_info("sid=%s bad event payload (%s): closing", s->sid, err ? err : "json");
		cJSON_Delete(data);
		eio_close(cl->e, "bad packet");
		return;
	}
	int is_ack = pk->type == SIO_ACK || pk->type == SIO_BINARY_ACK;
	char name[256] = "";
	if (!is_ack) {
		cJSON *first = cJSON_DetachItemFromArray(data, 0);
		snprintf(name, sizeof(name), "%s", first->valuestring);
		cJSON_Delete(first);
	}
	if (is_ack && pk->id >= 0 && call_acked(s, pk->id, data)) {
		/* answered one of our calls */
	} else if (conformance && !is_ack) {
		conformance_event(s, name, data, pk->id, natt, att);
	} else if (!is_ack && strcmp(name, "user-join") == 0) {
		/* The credentials are taken out rather than the payload copied:
		 * the token is checked, the rest goes on scrubbed. */
		cJSON *arg0 = cJSON_GetArrayItem(data, 0);
		cJSON *auth = cJSON_IsObject(arg0)
		                  ? cJSON_DetachItemFromObjectCaseSensitive(arg0, "auth")
		                  : NULL;
		scrub(arg0);
		char *txt = json_print(data);
		on_user_join(s, auth, txt, pk->id);
		free(txt);
		cJSON_Delete(auth);
	} else if (!s->user) {
		log_debug("sid=%s event '%s' from an anonymous socket dropped", s->sid, name);
	} else {
		cJSON *arg0 = cJSON_GetArrayItem(data, 0);
		char key[256];
		shard_key(arg0, s, key, sizeof(key));
		scrub(arg0);
		char *txt = json_print(data);
		if (is_ack)
			bus_ingress(s, "ack", SLICE_NULL, slice_cstr(txt), pk->id, att, natt,
			            slice_cstr(key));
		else
			bus_ingress(s, "event", slice_cstr(name), slice_cstr(txt), pk->id, att,
			            natt, slice_cstr(key));
		free(txt);
	}
	cJSON_Delete(data);
}

/* ---- teardown ---- */

static void free_sock(sio_sock *s, const char *reason)
{
	sio_client *cl = s->cl;
	for (sio_sock **pp = &cl->socks; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	for (sio_pending *p = cl->pending; p; p = p->next)
		if (p->s == s)
			p->cl = NULL, p->s = NULL;
	if (s->user) {
		bus_ingress(s, "disconnect", SLICE_NULL, SLICE_NULL, -1, NULL, 0, SLICE_NULL);
		bus_session_del(s);
	}
	while (s->calls) {
		sio_call_t *c = s->calls;
		s->calls = c->next;
		call_answer(c, SLICE_NULL, CALL_DISCONNECTED);
		call_free_one(c);
	}
	log_debug("sid=%s user=%s disconnected: %s", s->sid, s->user ? s->user : "-", reason);
	rooms_leave_all(&s->rooms);
	gw_timer_cancel(&s->exp_timer);
	map_del(&gw.sio_by_sid, slice_make(s->sid, 20));
	sio_count--;
	free(s->user);
	free(s);
}

static void client_close_sock(sio_sock *s, int notify_client, const char *reason)
{
	if (notify_client) {
		buf b;
		buf_init(&b, 0);
		sio_encode(&b, SIO_DISCONNECT, slice_cstr(s->nsp), -1, 0, SLICE_NULL);
		count_out(SIO_DISCONNECT);
		send_buf(s->cl, &b);
		buf_dispose(&b);
	}
	free_sock(s, reason);
}

static void bin_free(sio_bin *b)
{
	gw_timer_cancel(&b->at);
	for (uint32_t i = 0; i < b->natt; i++)
		buf_dispose(&b->att[i]);
	free(b->att);
	buf_dispose(&b->packet);
	free(b);
}

static void drop_attachments(sio_client *cl)
{
	if (cl->bin) {
		bin_free(cl->bin);
		cl->bin = NULL;
	}
}

/* ---- Engine.IO glue ---- */

static void connect_timeout(wheel_timer *t)
{
	sio_client *cl = wheel_owner(t, sio_client, ct);
	log_debug("eio=%s no Socket.IO CONNECT in time", cl->e->sid);
	eio_close(cl->e, "connect timeout");
}

static void attachments_timeout(wheel_timer *t)
{
	sio_client *cl = wheel_owner(t, sio_bin, at)->cl;
	gw.m.closed_bad_input++;
	log_info("eio=%s binary attachments did not arrive in time: closing", cl->e->sid);
	eio_close(cl->e, "attachments timeout");
}

static void on_open(eio_sock *e)
{
	sio_client *cl = calloc(1, sizeof(*cl));
	if (!cl) {
		eio_close(e, "out of memory");
		return;
	}
	cl->e = e;
	e->ud = cl;
	gw_timer_start(&cl->ct, connect_timeout, (uint64_t)gw.cfg.connect_timeout_ms);
}

static sio_limits lims(void)
{
	sio_limits l = {(uint32_t)gw.cfg.max_attachments, 0};
	return l;
}

static void handle_packet(sio_client *cl, const sio_packet *pk, const slice *att, uint32_t natt)
{
	if (pk->type >= 0 && pk->type < 7)
		gw.m.pkts_in[pk->type]++;
	switch (pk->type) {
	case SIO_CONNECT: on_connect(cl, pk); break;
	case SIO_DISCONNECT: {
		sio_sock *s = find_sock(cl, pk->nsp);
		if (s)
			free_sock(s, "client namespace disconnect");
		break;
	}
	case SIO_EVENT:
	case SIO_ACK:
	case SIO_BINARY_EVENT:
	case SIO_BINARY_ACK: dispatch_event(cl, pk, att, natt); break;
	default:
		gw.m.closed_bad_input++;
		log_info("eio=%s unexpected Socket.IO packet type %d: closing", cl->e->sid,
		         pk->type);
		eio_close(cl->e, "bad packet");
	}
}

static void on_message(eio_sock *e, slice data, int binary)
{
	sio_client *cl = e->ud;
	const char *err = NULL;
	sio_limits l = lims();
	if (binary) {
		sio_bin *b = cl->bin;
		if (!b || b->att_bytes + data.len > (size_t)gw.cfg.max_payload) {
			gw.m.closed_bad_input++;
			log_info("eio=%s unexpected or oversized binary attachment: closing",
			         e->sid);
			eio_close(e, "bad attachment");
			return;
		}
		buf_init(&b->att[b->natt], 0);
		buf_append_slice(&b->att[b->natt], data);
		b->natt++;
		b->att_bytes += data.len;
		if (b->natt < b->want_att)
			return;
		/* Take the packet and its attachments out of the client first: the
		 * handler may close the session, which frees the client. */
		cl->bin = NULL;
		gw_timer_cancel(&b->at);
		sio_packet pk;
		slice atts[SIO_MAX_ATTACHMENTS];
		sio_parse(buf_slice(&b->packet), &l, &pk, &err);
		for (uint32_t i = 0; i < b->natt; i++)
			atts[i] = buf_slice(&b->att[i]);
		handle_packet(cl, &pk, atts, b->natt);
		bin_free(b);
		return;
	}
	if (cl->bin) {
		gw.m.closed_bad_input++;
		log_info("eio=%s text packet while attachments were expected: closing", e->sid);
		eio_close(e, "bad attachment");
		return;
	}
	sio_packet pk;
	if (sio_parse(data, &l, &pk, &err) < 0) {
		char sample[80];
		gw.m.closed_bad_input++;
		log_info("eio=%s malformed Socket.IO packet (%s): closing; sample %s", e->sid, err,
		         log_sample(sample, sizeof(sample), data.base, data.len, 40));
		eio_close(e, "bad packet");
		return;
	}
	if (pk.attachments) {
		/* Placeholders are checked now, before any attachment is buffered:
		 * a packet that can never be valid costs nothing more. */
		cJSON *tree = json_parse(pk.data.base, pk.data.len);
		int bad = !tree || sio_check_placeholders(tree, pk.attachments, &err) < 0;
		cJSON_Delete(tree);
		if (bad) {
			gw.m.closed_bad_input++;
			log_info("eio=%s bad attachment placeholders (%s): closing", e->sid,
			         err ? err : "json");
			eio_close(e, "bad packet");
			return;
		}
		/* Keep the packet text; its slices are re-parsed once complete. */
		sio_bin *b = calloc(1, sizeof(*b));
		if (b) {
			buf_init(&b->packet, 0);
			b->att = calloc(pk.attachments, sizeof(buf));
		}
		if (!b || !b->att || buf_append_slice(&b->packet, data) < 0) {
			if (b)
				bin_free(b);
			eio_close(e, "out of memory");
			return;
		}
		b->want_att = pk.attachments;
		b->cl = cl;
		cl->bin = b;
		/* A client that announces attachments and never sends them would
		 * pin this packet: it gets as long as a connect does. */
		gw_timer_start(&b->at, attachments_timeout, (uint64_t)gw.cfg.connect_timeout_ms);
		return;
	}
	handle_packet(cl, &pk, NULL, 0);
}

static void on_close(eio_sock *e, const char *reason)
{
	sio_client *cl = e->ud;
	if (!cl)
		return;
	while (cl->socks)
		free_sock(cl->socks, reason);
	for (sio_pending *p = cl->pending; p; p = p->next)
		p->cl = NULL;
	gw_timer_cancel(&cl->ct);
	drop_attachments(cl);
	free(cl);
	e->ud = NULL;
}

/* Each answered ping refreshes the Redis sessions' TTL, so a session
 * outlives its socket by at most ping interval + timeout + a margin. */
static void on_heartbeat(eio_sock *e)
{
	sio_client *cl = e->ud;
	for (sio_sock *s = cl ? cl->socks : NULL; s; s = s->next)
		if (s->user)
			bus_session_touch(s);
}

const eio_handler sio_eio_handler = {on_open, on_message, on_close, on_heartbeat};

/* ---- delivery ---- */

typedef struct frames {
	rbuf *text;
	rbuf *bin[SIO_MAX_ATTACHMENTS];
} frames;

static void send_frames(sio_sock *s, const frames *f, slice packet, const slice *att, uint32_t natt)
{
	eio_sock *e = s->cl->e;
	eio_send_shared(e, f->text, packet, 0);
	for (uint32_t i = 0; i < natt; i++)
		eio_send_shared(e, f->bin[i], att[i], 1);
	gw.m.deliveries++;
}

static int build_frames(frames *f, slice packet, const slice *att, uint32_t natt)
{
	f->text = ws_frame_build2(WS_OP_TEXT, '4', packet);
	for (uint32_t i = 0; i < natt; i++)
		f->bin[i] = ws_frame_build(WS_OP_BINARY, att[i]);
	return f->text ? 0 : -1;
}

static void release_frames(frames *f, uint32_t natt)
{
	rbuf_unref(f->text);
	for (uint32_t i = 0; i < natt; i++)
		rbuf_unref(f->bin[i]);
}

uint32_t sio_deliver_room(slice name, slice packet, const slice *att, uint32_t natt, slice except)
{
	room *r = rooms_get(name);
	if (!r || natt > SIO_MAX_ATTACHMENTS)
		return 0;
	frames f;
	if (build_frames(&f, packet, att, natt) < 0)
		return 0;
	uint32_t n = 0;
	/* Sends never free members synchronously (slow consumers are closed from
	 * the flush event), so the room is stable while we walk it. */
	for (rmember *m = r->head; m; m = m->rnext) {
		sio_sock *s = m->owner;
		if (except.len && except.len == 20 && memcmp(s->sid, except.base, 20) == 0)
			continue;
		send_frames(s, &f, packet, att, natt);
		n++;
	}
	release_frames(&f, natt);
	return n;
}

uint32_t sio_deliver_sid(slice sid, slice packet, const slice *att, uint32_t natt)
{
	sio_sock *s = map_get(&gw.sio_by_sid, sid);
	if (!s || natt > SIO_MAX_ATTACHMENTS)
		return 0;
	frames f;
	if (build_frames(&f, packet, att, natt) < 0)
		return 0;
	send_frames(s, &f, packet, att, natt);
	release_frames(&f, natt);
	return 1;
}

int sio_join(slice sid, slice name)
{
	sio_sock *s = map_get(&gw.sio_by_sid, sid);
	return s ? rooms_join(&s->rooms, s, name) : 0;
}

int sio_leave(slice sid, slice name)
{
	sio_sock *s = map_get(&gw.sio_by_sid, sid);
	return s ? rooms_leave(&s->rooms, name) : 0;
}

int sio_sync_rooms(slice sid, slice prefix, slice rooms_json)
{
	sio_sock *s = map_get(&gw.sio_by_sid, sid);
	cJSON *want = json_parse(rooms_json.base, rooms_json.len);
	if (!s || !cJSON_IsArray(want) || prefix.len == 0) {
		cJSON_Delete(want);
		return -1;
	}
	int changes = 0;
	/* Leave what is no longer wanted... */
	for (rmember *m = s->rooms, *next; m; m = next) {
		next = m->onext;
		if (m->r->len < prefix.len || memcmp(m->r->name, prefix.base, prefix.len) != 0)
			continue;
		int keep = 0;
		const cJSON *r;
		cJSON_ArrayForEach(r, want)
		{
			if (cJSON_IsString(r) && strcmp(r->valuestring, m->r->name) == 0)
				keep = 1;
		}
		if (!keep) {
			rooms_leave(&s->rooms, slice_make(m->r->name, m->r->len));
			changes++;
		}
	}
	/* ...and join what is new. Only names under the prefix are accepted. */
	const cJSON *r;
	cJSON_ArrayForEach(r, want)
	{
		if (!cJSON_IsString(r) || strncmp(r->valuestring, prefix.base, prefix.len) != 0)
			continue;
		if (rooms_join(&s->rooms, s, slice_cstr(r->valuestring)) == 1)
			changes++;
	}
	cJSON_Delete(want);
	return changes;
}

int sio_disconnect(slice sid)
{
	sio_sock *s = map_get(&gw.sio_by_sid, sid);
	if (!s)
		return 0;
	client_close_sock(s, 1, "disconnected by the server");
	return 1;
}

void sio_each_authed(void (*fn)(const sio_sock *s))
{
	map_entry *e;
	for (size_t i = 0; (e = map_next(&gw.sio_by_sid, &i)) != NULL;) {
		const sio_sock *s = e->value;
		if (s->user)
			fn(s);
	}
}
