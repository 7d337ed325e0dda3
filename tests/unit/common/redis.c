/*
 * Tests common/redis.c: the URL parser, the argv builder and redis_field
 * on their own, then the connection against private redis-server
 * processes on spare ports (killed with the test, by PR_SET_PDEATHSIG, if
 * it dies first). Every wait runs the loop in short slices up to a
 * deadline, so a broken connection fails a test instead of hanging it.
 */
#include "common/clock.h"
#include "common/redis.h"
#include "tap.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

static struct event_base *base;

/* ---- loop helpers ---- */

static int spin(uint64_t end)
{
	if (clock_mono_ms() >= end)
		return 0;
	struct timeval tv = {0, 5000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	return 1;
}

/* Runs the loop until cond holds or ms have passed. */
#define WAIT(cond, ms)                                                                             \
	do {                                                                                       \
		uint64_t end_ = clock_mono_ms() + (ms);                                            \
		while (!(cond) && spin(end_)) {                                                    \
		}                                                                                  \
	} while (0)

static void run_for(uint64_t ms)
{
	uint64_t end = clock_mono_ms() + ms;
	while (spin(end)) {
	}
}

/* ---- private redis-server processes ---- */

typedef struct server {
	pid_t pid;
	int port;
	const char *password;
} server;

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("free_port");
		exit(2);
	}
	close(fd);
	return ntohs(sa.sin_port);
}

static int have_redis_server(void)
{
	return system("redis-server --version >/dev/null 2>&1") == 0;
}

/* Polls with a blocking client until the server answers (PONG or NOAUTH). */
static int server_ready(const server *s)
{
	for (int i = 0; i < 100; i++) {
		struct timeval tv = {0, 200000};
		redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
		redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
		int ready = r != NULL;
		if (r)
			freeReplyObject(r);
		if (c)
			redisFree(c);
		if (ready)
			return 1;
		usleep(50000);
	}
	return 0;
}

static int server_start(server *s)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", s->port);
	const char *argv[16] = {"redis-server", "--port", port, "--bind",       "127.0.0.1",
	                        "-::1",         "--save", "",   "--appendonly", "no"};
	int argc = 10;
	if (s->password) {
		argv[argc++] = "--requirepass";
		argv[argc++] = s->password;
	}
	argv[argc] = NULL;
	fflush(stdout);
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return server_ready(s) ? 0 : -1;
}

static void server_stop(server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGCONT);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
}

/* ---- callbacks that record what happened ---- */

typedef struct obs {
	int ups, downs;
	char err[200];
	int destroy_on_up, destroy_on_down;
} obs;

static void on_up(redis_conn *rc, void *arg)
{
	obs *o = arg;
	o->ups++;
	if (o->destroy_on_up)
		redis_conn_destroy(rc);
}

static void on_down(redis_conn *rc, const char *err, void *arg)
{
	obs *o = arg;
	o->downs++;
	snprintf(o->err, sizeof(o->err), "%s", err ? err : "(null)");
	if (o->destroy_on_down)
		redis_conn_destroy(rc);
}

static redis_conn *connect_url(const char *url, obs *o, uint64_t timeout_ms)
{
	redis_conn_opts opts = {.url = url,
	                        .name = "test",
	                        .timeout_ms = timeout_ms,
	                        .on_up = on_up,
	                        .on_down = on_down,
	                        .arg = o};
	return redis_conn_create(base, &opts);
}

static redis_conn *connect_port(int port, obs *o, uint64_t timeout_ms)
{
	char url[64];
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	return connect_url(url, o, timeout_ms);
}

typedef struct call {
	int calls, nulls;
	int type;
	long long integer;
	char str[512];
	redis_conn *destroy; /* destroyed from inside the callback */
} call;

static void on_call(redis_conn *rc, const redisReply *r, void *arg)
{
	call *c = arg;
	c->calls++;
	if (!r) {
		c->nulls++;
	} else {
		c->type = r->type;
		c->integer = r->integer;
		if (r->str)
			snprintf(c->str, sizeof(c->str), "%.*s", (int)r->len, r->str);
	}
	if (c->destroy)
		redis_conn_destroy(c->destroy);
}

/* Sends a command given as NUL-terminated strings. */
static int cmd(redis_conn *rc, call *c, int argc, const char **argv)
{
	size_t lens[8];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redis_cmd(rc, c ? on_call : NULL, c, argc, argv, lens);
}

static int cmd1(redis_conn *rc, call *c, const char *a0)
{
	return cmd(rc, c, 1, &a0);
}

/* Sends one command and waits for its reply. */
static call sync_cmd(redis_conn *rc, int argc, const char **argv)
{
	call c = {0};
	if (cmd(rc, &c, argc, argv) == 0)
		WAIT(c.calls, 3000);
	return c;
}

/* ---- URL parser ---- */

typedef struct url_case {
	const char *url;
	int rc;
	const char *host;
	int port, db;
	const char *user, *password;
} url_case;

static const url_case url_cases[] = {
    {"redis://localhost", 0, "localhost", 6379, 0, "", ""},
    {"redis://h:6380", 0, "h", 6380, 0, "", ""},
    {"redis://h:6380/2", 0, "h", 6380, 2, "", ""},
    {"redis://10.0.0.1/7", 0, "10.0.0.1", 6379, 7, "", ""},
    {"redis://h/", 0, "h", 6379, 0, "", ""},
    {"redis://:pw@host", 0, "host", 6379, 0, "", "pw"},
    {"redis://user:pw@host:7000/3", 0, "host", 7000, 3, "user", "pw"},
    {"redis://secret@host", 0, "host", 6379, 0, "", "secret"},
    {"redis://:p@ss:w/rd@h:1/15", 0, "h", 1, 15, "", "p@ss:w/rd"},
    {"REDIS://Host:65535", 0, "Host", 65535, 0, "", ""},
    {"redis://[::1]", 0, "::1", 6379, 0, "", ""},
    {"redis://u:p@[fe80::1]:6380/4", 0, "fe80::1", 6380, 4, "u", "p"},
    {"rediss://h", -1, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/redis.sock", -1, NULL, 0, 0, NULL, NULL},
    {"redis+unix:///tmp/redis.sock", -1, NULL, 0, 0, NULL, NULL},
    {"http://h", -1, NULL, 0, 0, NULL, NULL},
    {"redis:/h", -1, NULL, 0, 0, NULL, NULL},
    {"", -1, NULL, 0, 0, NULL, NULL},
    {"redis://", -1, NULL, 0, 0, NULL, NULL},
    {"redis://:pw@", -1, NULL, 0, 0, NULL, NULL},
    {"redis://:6379", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h:", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h:0", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h:65536", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h:12a", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h:-1", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h/x", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h/1/2", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h/-1", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h/99999999999", -1, NULL, 0, 0, NULL, NULL},
    {"redis://h?db=1", -1, NULL, 0, 0, NULL, NULL},
    {"redis://[::1", -1, NULL, 0, 0, NULL, NULL},
    {"redis://[]:1", -1, NULL, 0, 0, NULL, NULL},
    {"redis://[::1]x", -1, NULL, 0, 0, NULL, NULL},
    {"redis://::1", -1, NULL, 0, 0, NULL, NULL},
};

static void test_url(void)
{
	for (size_t i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
		const url_case *c = &url_cases[i];
		char host[64], user[64], pw[64];
		int port = -7, db = -7;
		int r = redis_parse_url(c->url, host, sizeof(host), &port, &db, user, sizeof(user),
		                        pw, sizeof(pw));
		is_int(r, c->rc, "parse '%s' returns %d", c->url, c->rc);
		if (r == 0 && c->rc == 0) {
			int same = strcmp(host, c->host) == 0 && port == c->port && db == c->db &&
			           strcmp(user, c->user) == 0 && strcmp(pw, c->password) == 0;
			if (!ok(same, "  '%s' fields", c->url))
				printf("#   got host=%s port=%d db=%d user=%s pw=%s\n", host, port,
				       db, user, pw);
		}
	}
	char small[4], user[8], pw[8];
	int port, db;
	is_int(redis_parse_url("redis://abcd", small, sizeof(small), &port, &db, user, sizeof(user),
	                       pw, sizeof(pw)),
	       -1, "host longer than its buffer is refused");
	is_int(redis_parse_url("redis://:longpassword@h", small, sizeof(small), &port, &db, user,
	                       sizeof(user), pw, sizeof(pw)),
	       -1, "password longer than its buffer is refused");
	is_int(redis_parse_url(NULL, small, sizeof(small), &port, &db, user, sizeof(user), pw,
	                       sizeof(pw)),
	       -1, "NULL url is refused");
	obs o = {0};
	redis_conn_opts opts = {.url = "rediss://h", .on_up = on_up, .arg = &o};
	ok(redis_conn_create(base, &opts) == NULL, "create refuses a bad URL");
}

/* ---- argv builder and redis_field ---- */

static void test_argv(void)
{
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "SET");
	redis_arg(&a, "key:xyz", 3);
	redis_arg_slice(&a, SLICE_NULL);
	redis_arg_u64(&a, UINT64_MAX);
	redis_arg_i64(&a, INT64_MIN);
	redis_arg_i64(&a, 42);
	is_int(a.n, 6, "six arguments");
	is_mem(a.v[1], a.l[1], "key", 3, "explicit length");
	ok(a.v[2] != NULL && a.l[2] == 0, "NULL slice becomes an empty argument");
	is_mem(a.v[3], a.l[3], "18446744073709551615", 20, "u64 max");
	is_mem(a.v[4], a.l[4], "-9223372036854775808", 20, "i64 min");
	is_mem(a.v[5], a.l[5], "42", 2, "i64 small");

	redis_argv_init(&a);
	for (int i = 0; i < REDIS_ARGV_MAX; i++)
		redis_arg_str(&a, "x");
	is_int(a.n, REDIS_ARGV_MAX, "REDIS_ARGV_MAX arguments fit");
	redis_arg_str(&a, "x");
	is_int(a.n, -1, "one more poisons the builder");
	redis_arg_str(&a, "x");
	is_int(a.n, -1, "and it stays poisoned");

	redis_argv_init(&a);
	for (int i = 0; i < 16; i++)
		redis_arg_u64(&a, (uint64_t)i);
	is_int(a.n, 16, "16 numbers fit");
	is_mem(a.v[15], a.l[15], "15", 2, "each in its own slot");
	redis_arg_i64(&a, 16);
	is_int(a.n, -1, "a 17th number poisons the builder");
}

static void test_field(void)
{
	char f0[] = "op", v0[] = "room", f1[] = "pkt", v1[] = "", f2[] = "n";
	redisReply e0 = {.type = REDIS_REPLY_STRING, .str = f0, .len = 2};
	redisReply e1 = {.type = REDIS_REPLY_STRING, .str = v0, .len = 4};
	redisReply e2 = {.type = REDIS_REPLY_STRING, .str = f1, .len = 3};
	redisReply e3 = {.type = REDIS_REPLY_STRING, .str = v1, .len = 0};
	redisReply e4 = {.type = REDIS_REPLY_STRING, .str = f2, .len = 1};
	redisReply e5 = {.type = REDIS_REPLY_INTEGER, .integer = 5};
	redisReply e6 = {.type = REDIS_REPLY_STRING, .str = f0, .len = 2}; /* odd trailing field */
	redisReply *els[] = {&e0, &e1, &e2, &e3, &e4, &e5, &e6};
	redisReply kv = {.type = REDIS_REPLY_ARRAY, .elements = 7, .element = els};
	slice s = redis_field(&kv, "op");
	is_mem(s.base, s.len, "room", 4, "field found");
	s = redis_field(&kv, "pkt");
	ok(s.base != NULL && s.len == 0, "empty value is present, not absent");
	ok(redis_field(&kv, "n").base == NULL, "non-string value is absent");
	ok(redis_field(&kv, "o").base == NULL, "prefix does not match");
	ok(redis_field(&kv, "missing").base == NULL, "missing field is absent");
	ok(redis_field(&e0, "op").base == NULL, "non-array reply gives absent");
	ok(redis_field(NULL, "op").base == NULL, "NULL reply gives absent");
}

/* ---- live tests ---- */

static server srv_a, srv_b;
static redis_conn *rc_a;
static obs obs_a;

static void test_refused_while_down(void)
{
	obs o = {0};
	call c = {0};
	redis_conn *rc = connect_port(free_port(), &o, 0);
	ok(rc != NULL, "create towards a port nobody listens on");
	ok(!redis_conn_up(rc), "not up while connecting");
	is_int(cmd1(rc, &c, "PING"), -1, "command refused while connecting");
	WAIT(o.downs, 2000);
	is_int(o.downs, 1, "on_down called for the failed attempt");
	ok(strstr(o.err, "refused") != NULL, "with the reason: %s", o.err);
	is_int(cmd1(rc, &c, "PING"), -1, "command refused while down");
	run_for(700); /* several retries: 100, 200, 400 ms */
	is_int(o.downs, 1, "on_down once per outage, not once per retry");
	is_int(o.ups, 0, "never up");
	is_int(c.calls, 0, "refused commands' callbacks never run");
	is_int(redis_conn_pending(rc), 0, "nothing pending");
	redis_conn_destroy(rc);

	/* The owner may destroy the connection from on_down. */
	obs od = {.destroy_on_down = 1};
	connect_port(free_port(), &od, 0);
	WAIT(od.downs, 2000);
	is_int(od.downs, 1, "destroy from inside on_down");

	/* And right after create, while still connecting. */
	obs oc = {0};
	redis_conn_destroy(connect_port(free_port(), &oc, 0));
	run_for(50);
	ok(oc.ups == 0 && oc.downs == 0, "destroy while connecting tells nothing");
}

static void test_connect(void)
{
	rc_a = connect_port(srv_a.port, &obs_a, 0);
	WAIT(obs_a.ups, 3000);
	is_int(obs_a.ups, 1, "on_up called once");
	ok(redis_conn_up(rc_a), "redis_conn_up");
	is_int(obs_a.downs, 0, "no on_down");
	const char *argv[] = {"PING"};
	call c = sync_cmd(rc_a, 1, argv);
	is_int(c.calls, 1, "PING answered");
	ok(c.type == REDIS_REPLY_STATUS && strcmp(c.str, "PONG") == 0, "PONG (%s)", c.str);
	is_int(redis_conn_pending(rc_a), 0, "nothing pending");

	char url[64];
	snprintf(url, sizeof(url), "redis://[::1]:%d", srv_a.port);
	obs o6 = {0};
	redis_conn *rc6 = connect_url(url, &o6, 0);
	WAIT(o6.ups || o6.downs, 2000);
	if (o6.ups)
		ok(1, "IPv6 literal host connects");
	else
		ok(1, "IPv6 literal host # SKIP no IPv6 loopback (%s)", o6.err);
	redis_conn_destroy(rc6);
}

static int incr_calls, incr_bad, incr_ids[10000];

static void on_incr(redis_conn *rc, const redisReply *r, void *arg)
{
	int i = *(const int *)arg;
	if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != i + 1 || incr_calls != i)
		incr_bad++;
	incr_calls++;
}

static void test_pipeline(void)
{
	const char *argv[] = {"INCR", "ctr"};
	size_t lens[] = {4, 3};
	int refused = 0;
	for (int i = 0; i < 10000; i++) {
		incr_ids[i] = i;
		refused += redis_cmd(rc_a, on_incr, &incr_ids[i], 2, argv, lens) != 0;
	}
	is_int(refused, 0, "10000 INCRs queued");
	is_int(redis_conn_pending(rc_a), 10000, "all pending");
	WAIT(incr_calls == 10000, 10000);
	is_int(incr_calls, 10000, "10000 callbacks");
	is_int(incr_bad, 0, "each once, in order, with its count");
	is_int(redis_conn_pending(rc_a), 0, "nothing pending");

	/* The argv builder on a live connection, and redis_field on HGETALL. */
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "HSET");
	redis_arg_str(&a, "h");
	redis_arg_str(&a, "bin");
	redis_arg(&a, "a\0b", 3);
	redis_arg_str(&a, "n");
	redis_arg_i64(&a, -5);
	call c = {0};
	is_int(redis_send(rc_a, on_call, &c, &a), 0, "redis_send");
	const char *hg[] = {"HGETALL", "h"};
	size_t hl[] = {7, 1};
	call d = {0};
	redis_cmd(rc_a, on_call, &d, 2, hg, hl);
	WAIT(d.calls, 3000);
	is_int(c.integer, 2, "HSET stored two fields");
	ok(d.type == REDIS_REPLY_ARRAY, "HGETALL answered");
	redis_argv_init(&a);
	for (int i = 0; i <= REDIS_ARGV_MAX; i++)
		redis_arg_str(&a, "x");
	is_int(redis_send(rc_a, on_call, &c, &a), -1, "a poisoned argv is refused");
}

static size_t big_len;
static char big_first, big_last;
static int list_ok;

static void on_big(redis_conn *rc, const redisReply *r, void *arg)
{
	(void)rc;
	(void)arg;
	if (r && r->type == REDIS_REPLY_STRING && r->len) {
		big_first = r->str[0];
		big_last = r->str[r->len - 1];
		big_len = r->len;
	} else {
		big_len = 1; /* ends the wait; the length check fails */
	}
}

/* list_ok: how many leading elements are "v{index}". */
static void on_list(redis_conn *rc, const redisReply *r, void *arg)
{
	(void)rc;
	(void)arg;
	int good = 0;
	char want[16];
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		int n = snprintf(want, sizeof(want), "v%zu", i);
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_STRING || e->len != (size_t)n ||
		    memcmp(e->str, want, (size_t)n))
			break;
		good++;
	}
	list_ok = good;
}

/* A command larger than the socket's send buffer: the adapter's first
 * write leaves most of it queued, and the rest must go out as the socket
 * drains (EPOLLOUT), before the command queued after it. */
static void test_big_write(void)
{
	size_t n = 32u << 20;
	char *v = malloc(n);
	ok(v != NULL, "32 MB value allocated");
	if (!v)
		return;
	memset(v, 'x', n);
	v[n - 1] = 'y';
	const char *set[] = {"SET", "big", v};
	size_t setl[] = {3, 3, n};
	const char *len[] = {"STRLEN", "big"};
	size_t lenl[] = {6, 3};
	call c = {0}, d = {0};
	is_int(redis_cmd(rc_a, on_call, &c, 3, set, setl), 0, "SET of 32 MB queued");
	is_int(redis_cmd(rc_a, on_call, &d, 2, len, lenl), 0, "STRLEN queued behind it");
	free(v); /* hiredis holds its own copy of the command */
	WAIT(d.calls, 10000);
	is_str(c.str, "OK", "the SET was written whole and answered");
	is_int(d.integer, (long long)n, "STRLEN sees every byte");

	/* Replies bigger than a block of the reply arena: one 32 MB string,
	 * then an array of 20 000 strings, each read whole and intact. */
	const char *get[] = {"GET", "big"};
	size_t getl[] = {3, 3};
	big_len = 0;
	redis_cmd(rc_a, on_big, NULL, 2, get, getl);
	WAIT(big_len, 10000);
	is_int((long long)big_len, (long long)n, "GET returns 32 MB");
	ok(big_last == 'y' && big_first == 'x', "first and last bytes intact");
	for (int i = 0; i < 20000; i += 1000) {
		const char *argv[1002] = {"RPUSH", "list"};
		size_t lens[1002] = {5, 4};
		char vals[1000][16];
		for (int k = 0; k < 1000; k++) {
			lens[k + 2] = (size_t)snprintf(vals[k], sizeof(vals[k]), "v%d", i + k);
			argv[k + 2] = vals[k];
		}
		redis_cmd(rc_a, NULL, NULL, 1002, argv, lens);
	}
	const char *lr[] = {"LRANGE", "list", "0", "-1"};
	size_t lrl[] = {6, 4, 1, 2};
	list_ok = -1;
	redis_cmd(rc_a, on_list, NULL, 4, lr, lrl);
	WAIT(list_ok >= 0, 10000);
	is_int(list_ok, 20000, "LRANGE of 20 000: every element in order");
	const char *dl[] = {"DEL", "list"};
	cmd(rc_a, NULL, 2, dl);
	const char *del[] = {"DEL", "big"};
	cmd(rc_a, NULL, 2, del);
}

static slice hgetall_field;
static char hgetall_copy[16];

static void on_hgetall(redis_conn *rc, const redisReply *r, void *arg)
{
	hgetall_field = redis_field(r, "bin");
	if (hgetall_field.base && hgetall_field.len < sizeof(hgetall_copy))
		memcpy(hgetall_copy, hgetall_field.base, hgetall_field.len);
	*(int *)arg = 1;
}

static void test_field_live(void)
{
	const char *argv[] = {"HGETALL", "h"};
	size_t lens[] = {7, 1};
	int done = 0;
	redis_cmd(rc_a, on_hgetall, &done, 2, argv, lens);
	WAIT(done, 3000);
	is_mem(hgetall_copy, hgetall_field.len, "a\0b", 3, "redis_field on a real reply");
}

static void test_errors(void)
{
	uint64_t before = redis_conn_errors(rc_a);
	cmd1(rc_a, NULL, "NOSUCHCOMMAND");
	cmd1(rc_a, NULL, "PING");
	call c = {0};
	cmd1(rc_a, &c, "NOSUCHCOMMAND");
	WAIT(c.calls, 3000);
	is_int(redis_conn_errors(rc_a) - before, 1,
	       "error replies counted for NULL-cb commands only");
	is_int(c.type, REDIS_REPLY_ERROR, "a callback gets its error reply");

	call s = {0};
	const char *sub[] = {"SUBSCRIBE", "chan"};
	is_int(cmd(rc_a, &s, 2, sub), -1, "SUBSCRIBE refused (one command, many replies)");
	const char *mon[] = {"monitor"};
	is_int(cmd(rc_a, &s, 1, mon), -1, "MONITOR refused");
	is_int(redis_cmd(rc_a, on_call, &s, 0, sub, NULL), -1, "argc 0 refused");
	run_for(20);
	is_int(s.calls, 0, "refused commands never call back");
}

static void test_kill_in_flight(void)
{
	call blpop = {0}, ping[5] = {{0}};
	const char *argv[] = {"BLPOP", "nothing", "0"};
	cmd(rc_a, &blpop, 3, argv);
	for (int i = 0; i < 5; i++)
		cmd1(rc_a, &ping[i], "PING");
	const char *set[] = {"SET", "x", "y"};
	cmd(rc_a, NULL, 3, set);
	run_for(200);
	is_int(redis_conn_pending(rc_a), 7, "7 commands in flight behind a BLPOP");
	kill(srv_a.pid, SIGKILL);
	waitpid(srv_a.pid, NULL, 0);
	srv_a.pid = 0;
	WAIT(ping[4].calls && obs_a.downs, 3000);
	int once = blpop.calls == 1 && blpop.nulls == 1;
	for (int i = 0; i < 5; i++)
		once = once && ping[i].calls == 1 && ping[i].nulls == 1;
	ok(once, "every callback ran once, with NULL");
	is_int(obs_a.downs, 1, "on_down called (%s)", obs_a.err);
	is_int(redis_conn_pending(rc_a), 0, "nothing pending");
	ok(!redis_conn_up(rc_a), "not up");
	call late = {0};
	is_int(cmd1(rc_a, &late, "PING"), -1, "command refused while down");

	uint64_t t0 = clock_mono_ms();
	ok(server_start(&srv_a) == 0, "server restarted on port %d", srv_a.port);
	WAIT(obs_a.ups == 2, 8000);
	is_int(obs_a.ups, 2, "reconnected by itself, on_up again (%llu ms after restart)",
	       (unsigned long long)(clock_mono_ms() - t0));
	is_int(obs_a.downs, 1, "one on_down for the outage");
	const char *p[] = {"PING"};
	call c = sync_cmd(rc_a, 1, p);
	ok(c.calls == 1 && strcmp(c.str, "PONG") == 0, "PING works again");
	is_int(late.calls, 0, "the refused command never called back");
}

static void test_timeout(void)
{
	obs o = {0};
	redis_conn *rc = connect_port(srv_a.port, &o, 300);
	WAIT(o.ups, 3000);
	is_int(o.ups, 1, "timeout connection up");
	kill(srv_a.pid, SIGSTOP);
	call ping[3] = {{0}};
	uint64_t t0 = clock_mono_ms();
	for (int i = 0; i < 3; i++)
		cmd1(rc, &ping[i], "PING");
	WAIT(ping[2].calls, 3000);
	uint64_t took = clock_mono_ms() - t0;
	int once = 1;
	for (int i = 0; i < 3; i++)
		once = once && ping[i].calls == 1 && ping[i].nulls == 1;
	ok(once, "frozen server: every callback ran once, with NULL");
	ok(took >= 300 && took < 1000, "after the 300 ms timeout (%llu ms)",
	   (unsigned long long)took);
	WAIT(o.downs, 1000);
	is_int(o.downs, 1, "on_down called");
	is_str(o.err, "reply timeout", "with the reason");
	/* Reconnects are accepted by the kernel but never answered: they must
	 * time out too, without telling the owner about each of them. */
	run_for(1000);
	ok(o.ups == 1 && o.downs == 1, "no flapping while frozen (ups %d downs %d)", o.ups,
	   o.downs);
	ok(!redis_conn_up(rc), "not up while frozen");
	kill(srv_a.pid, SIGCONT);
	t0 = clock_mono_ms();
	WAIT(o.ups == 2, 8000);
	is_int(o.ups, 2, "recovers after SIGCONT (%llu ms)",
	       (unsigned long long)(clock_mono_ms() - t0));
	const char *p[] = {"PING"};
	call c = sync_cmd(rc, 1, p);
	ok(c.calls == 1 && strcmp(c.str, "PONG") == 0, "PING works again");
	redis_conn_destroy(rc);
}

static void test_destroy(void)
{
	obs o = {0};
	redis_conn *rc = connect_port(srv_a.port, &o, 0);
	WAIT(o.ups, 3000);
	call blpop = {0}, ping[3] = {{0}};
	const char *argv[] = {"BLPOP", "nothing", "0"};
	cmd(rc, &blpop, 3, argv);
	for (int i = 0; i < 3; i++)
		cmd1(rc, &ping[i], "PING");
	run_for(100);
	is_int(redis_conn_pending(rc), 4, "4 commands in flight");
	redis_conn_destroy(rc);
	int once = blpop.calls == 1 && blpop.nulls == 1;
	for (int i = 0; i < 3; i++)
		once = once && ping[i].calls == 1 && ping[i].nulls == 1;
	ok(once, "destroy: every pending callback ran once with NULL before it returned");
	run_for(50);
	is_int(o.downs, 0, "destroy does not call on_down");

	/* Destroyed from inside a reply callback: the remaining callbacks run
	 * with NULL, even when their replies were already read. */
	obs oe = {0};
	rc = connect_port(srv_a.port, &oe, 0);
	WAIT(oe.ups, 3000);
	call first = {.destroy = rc}, rest[3] = {{0}};
	cmd1(rc, &first, "PING");
	for (int i = 0; i < 3; i++)
		cmd1(rc, &rest[i], "PING");
	WAIT(rest[2].calls, 3000);
	ok(first.calls == 1 && first.nulls == 0, "first callback got its reply");
	once = 1;
	for (int i = 0; i < 3; i++)
		once = once && rest[i].calls == 1 && rest[i].nulls == 1;
	ok(once, "destroy inside a callback: the others ran once with NULL");

	/* Destroyed from on_up. */
	obs ou = {.destroy_on_up = 1};
	connect_port(srv_a.port, &ou, 0);
	WAIT(ou.ups, 3000);
	run_for(50);
	ok(ou.ups == 1 && ou.downs == 0, "destroy from inside on_up");
}

static void test_auth_select(void)
{
	char url[128];
	obs o1 = {0}, o2 = {0}, o3 = {0};
	snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/3", srv_b.port);
	redis_conn *r1 = connect_url(url, &o1, 0);
	snprintf(url, sizeof(url), "redis://default:s3cret@127.0.0.1:%d/3", srv_b.port);
	redis_conn *r2 = connect_url(url, &o2, 0);
	snprintf(url, sizeof(url), "redis://s3cret@127.0.0.1:%d", srv_b.port);
	redis_conn *r3 = connect_url(url, &o3, 0);
	WAIT(o1.ups && o2.ups && o3.ups, 3000);
	ok(o1.ups && o2.ups && o3.ups, "AUTH password, AUTH user password: all up");
	const char *ci[] = {"CLIENT", "INFO"};
	call c = sync_cmd(r1, 2, ci);
	ok(strstr(c.str, " db=3 ") != NULL, "SELECT 3 took effect (CLIENT INFO)");
	const char *set[] = {"SET", "k", "in-db-3"};
	c = sync_cmd(r1, 3, set);
	ok(c.type == REDIS_REPLY_STATUS, "SET in db 3");
	const char *get[] = {"GET", "k"};
	c = sync_cmd(r2, 2, get);
	is_str(c.str, "in-db-3", "a second connection on db 3 (ACL user form) reads it");
	c = sync_cmd(r3, 2, get);
	ok(c.calls == 1 && c.type == REDIS_REPLY_NIL, "db 0 does not have it");
	redis_conn_destroy(r1);
	redis_conn_destroy(r2);
	redis_conn_destroy(r3);

	obs ow = {0}, on = {0};
	snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", srv_b.port);
	redis_conn *rw = connect_url(url, &ow, 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv_b.port);
	redis_conn *rn = connect_url(url, &on, 0);
	WAIT(ow.downs && on.downs, 3000);
	ok(ow.downs == 1 && strncmp(ow.err, "AUTH: ", 6) == 0, "wrong password: on_down (%s)",
	   ow.err);
	ok(on.downs == 1 && strstr(on.err, "NOAUTH") != NULL, "no password: on_down (%s)", on.err);
	run_for(400);
	ok(ow.ups == 0 && on.ups == 0 && ow.downs == 1 && on.downs == 1,
	   "never up, told once while retrying");
	redis_conn_destroy(rw);
	redis_conn_destroy(rn);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	test_url();
	test_argv();
	test_field();
	if (!have_redis_server()) {
		ok(1, "live tests # SKIP redis-server not found");
	} else {
		test_refused_while_down();
		srv_a.port = free_port();
		srv_b = (server){.port = free_port(), .password = "s3cret"};
		ok(server_start(&srv_a) == 0, "redis-server on port %d", srv_a.port);
		ok(server_start(&srv_b) == 0, "redis-server with a password on port %d",
		   srv_b.port);
		test_connect();
		test_pipeline();
		test_big_write();
		test_field_live();
		test_errors();
		test_kill_in_flight();
		test_timeout();
		test_destroy();
		test_auth_select();
		redis_conn_destroy(rc_a);
		server_stop(&srv_a);
		server_stop(&srv_b);
	}
	run_for(20);
	event_base_free(base);
	return tap_done();
}
