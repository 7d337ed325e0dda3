/*
 * tidings-loadgen: drives N Socket.IO v5 clients over WebSocket against a
 * server and a producer that POSTs emits to its HTTP API, and reports what
 * it measured (connect rate, memory per connection, delivery rate and
 * latency, server CPU per connection and per delivery) as one JSON object.
 *
 * The parent forks the client processes (lg_swarm.c), then walks the run
 * through its phases on its own loop, which also carries the producer
 * (lg_producer.c): connect, settle, idle, then one step per producer rate,
 * each a snapshot in every child, the send window, a drain, and the
 * children's counts merged. The servers' CPU and memory are read from /proc
 * at the boundaries of each phase. The contract it tests is the same for
 * every server: see --help and tests/bench/peers/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/jwt.h"
#include "common/rand.h"
#include "lg_hist.h"
#include "lg_ipc.h"
#include "lg_proc.h"
#include "lg_producer.h"
#include "lg_swarm.h"

#define MAX_PIDS       32
#define MAX_STEPS      64
#define MAX_SRC        64
#define SETTLE_MS      1000
#define WAIT_MS        30000 /* a child that does not answer a command by then is killed */
#define FD_MARGIN      32    /* descriptors a client process needs besides its sockets */
#define EXIT_USAGE     2
#define EXIT_FAIL      1
#define CONNECTED_PART 0.99 /* below this share of clients connected, exit 1 */

typedef struct lg_opts {
	char *ws, *path, *src, *secret, *emit, *api_key, *steps, *pids, *json;
	int64_t clients, procs, users, connect_rate, connect_timeout, producers, pipeline;
	int64_t step_seconds, drain_seconds, idle_seconds, payload_bytes, answers, answer_len,
	    batch;
	int user_join;
	int persist;
} lg_opts;

#define O(f) offsetof(lg_opts, f)
#define E(n) "TIDINGS_LOADGEN_" n
static const config_opt opt_table[] = {
    {"ws", E("WS"), NULL, 0, CFG_STR, "", 0, 0, O(ws), 0,
     "HOST:PORT of the Socket.IO server (required)"},
    {"path", E("PATH"), NULL, 0, CFG_STR, "/ws/socket.io/", 0, 0, O(path), 0, "Socket.IO path"},
    {"clients", E("CLIENTS"), NULL, 0, CFG_INT, "100", 1, 5000000, O(clients), 0, "clients in all"},
    {"procs", E("PROCS"), NULL, 0, CFG_INT, "1", 1, 256, O(procs), 0,
     "client processes; process k opens clients k, k + procs, ..."},
    {"src", E("SRC"), NULL, 0, CFG_STR, "", 0, 0, O(src), 0,
     "source addresses the clients bind, comma-separated; process k uses number k % count "
     "(empty: the kernel's choice)"},
    {"users", E("USERS"), NULL, 0, CFG_INT, "0", 0, 1000000, O(users), 0,
     "users; client i is user bench-u{i % users} (0: one per client)"},
    {"secret", E("SECRET"), "WEBUI_SECRET_KEY", 0, CFG_STR, "", 0, 0, O(secret), CFG_SECRET,
     "HS256 key of the clients' tokens (required)"},
    {"user-join", E("USER_JOIN"), NULL, 0, CFG_BOOL, "0", 0, 1, O(user_join), 0,
     "emit user-join after the CONNECT, as Open WebUI's front end does"},
    {"connect-rate", E("CONNECT_RATE"), NULL, 0, CFG_INT, "0", 0, 10000000, O(connect_rate), 0,
     "new connections per second per process (0: at once, at most 256 in flight per process)"},
    {"connect-timeout", E("CONNECT_TIMEOUT"), NULL, 0, CFG_INT, "10", 1, 3600, O(connect_timeout),
     0, "seconds a client has to get its CONNECT acknowledged"},
    {"emit", E("EMIT"), NULL, 0, CFG_STR, "", 0, 0, O(emit), 0,
     "HOST:PORT of the emit API (POST /api/v1/emit); required with --steps"},
    {"api-key", E("API_KEY"), "TIDINGS_API_KEY", 0, CFG_STR, "", 0, 0, O(api_key), CFG_SECRET,
     "bearer token of the emit API"},
    {"producers", E("PRODUCERS"), NULL, 0, CFG_INT, "8", 1, 256, O(producers), 0,
     "producer connections (HTTP/1.1 keep-alive)"},
    {"pipeline", E("PIPELINE"), NULL, 0, CFG_INT, "1", 1, LG_PIPELINE_MAX, O(pipeline), 0,
     "requests in flight per producer connection"},
    {"steps", E("STEPS"), NULL, 0, CFG_STR, "", 0, 0, O(steps), 0,
     "producer rates in emits/s, comma-separated, one step each (empty: no producer)"},
    {"step-seconds", E("STEP_SECONDS"), NULL, 0, CFG_INT, "5", 1, 86400, O(step_seconds), 0,
     "how long each step sends"},
    {"drain-seconds", E("DRAIN_SECONDS"), NULL, 0, CFG_INT, "2", 0, 3600, O(drain_seconds), 0,
     "wait after each step for stragglers, counted in that step"},
    {"idle-seconds", E("IDLE_SECONDS"), NULL, 0, CFG_INT, "0", 0, 86400, O(idle_seconds), 0,
     "once all are connected (and 1 s to settle), wait this long before sampling memory"},
    {"persist", E("PERSIST"), NULL, 0, CFG_BOOL, "0", 0, 1, O(persist), 0,
     "emit persisted chat updates (status, message, source with update_db) to each user's "
     "chat bench-c{k}, message m1, instead of plain events"},
    {"answers", E("ANSWERS"), NULL, 0, CFG_INT, "0", 0, 1000000, O(answers), 0,
     "with --persist: chats being answered at once; each answer gets --answer-len updates, "
     "then the next chat in line takes its place (0: every user's chat at once, for ever)"},
    {"answer-len", E("ANSWER_LEN"), NULL, 0, CFG_INT, "100", 1, 1000000, O(answer_len), 0,
     "with --answers: updates per answer"},
    {"batch", E("BATCH"), NULL, 0, CFG_INT, "1", 1, 1000, O(batch), 0,
     "most emits per request: above 1 the producer posts arrays of what is due, each "
     "millisecond or as soon as a whole batch is"},
    {"payload-bytes", E("PAYLOAD_BYTES"), NULL, 0, CFG_INT, "64", 0, 16 << 20, O(payload_bytes), 0,
     "filler bytes in each emit"},
    {"pids", E("PIDS"), NULL, 0, CFG_STR, "", 0, 0, O(pids), 0,
     "server processes whose CPU and memory are sampled, comma-separated"},
    {"json", E("JSON"), NULL, 0, CFG_STR, "", 0, 0, O(json), 0,
     "write the results to this file (default: standard output)"},
    CONFIG_END,
};

static const char usage_text[] =
    "usage: tidings-loadgen --ws HOST:PORT --secret KEY [--clients N] [--procs P]\n"
    "           [--emit HOST:PORT --api-key KEY --steps R1,R2,...] [--option=value ...]\n"
    "\n"
    "Connects N Socket.IO v5 clients over WebSocket, then for each step POSTs emits\n"
    "at the given rate to the users' rooms and measures their delivery. Results go\n"
    "out as one JSON object; a summary line per phase goes to standard error.\n"
    "Exit status: 0 when the run completed, 1 when fewer than 99% of the clients\n"
    "connected, 2 on usage errors.";

/* A server process sample, and the clocks that go with it. */
typedef struct sample {
	double cpu[MAX_PIDS];
	long rss[MAX_PIDS];
	double self_cpu;
	uint64_t us;
} sample;

typedef struct kid {
	pid_t pid;
	int cmd_fd, rep_fd;
	struct event *ev;
	buf in;
	int alive;
	int waiting;     /* an answer (or LG_MSG_CONNECTED) is due */
	double cpu_mark; /* its CPU when the current step began */
	lg_report rep;   /* the last report */
} kid;

enum { PH_CONNECT, PH_SETTLE, PH_SNAP, PH_RUN, PH_DRAIN, PH_STATS, PH_FINAL, PH_DONE };

static struct loadgen {
	lg_opts o;
	uint32_t clients, procs, users;
	uint32_t steps[MAX_STEPS], nsteps;
	int pids[MAX_PIDS], npids;
	struct sockaddr_storage ws, emit, src[MAX_SRC];
	socklen_t wslen, emitlen, srclen[MAX_SRC];
	uint32_t nsrc;
	char **tokens;
	kid *kids;
	struct event_base *base;
	struct event *timer, *watchdog, *sigint, *sigterm;
	lg_producer *prod;
	int phase;
	uint32_t step;
	sample before, connected, idle, s0, s1;
	lg_report conn;
	lg_hist hist, tmp;
	uint64_t *ready_per_user;
	uint32_t *user_tmp;
	buf json_steps;
	int exit_code;
} L;

/* ---- option parsing ---- */

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tidings-loadgen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see --help)\n");
	exit(EXIT_USAGE);
}

/* Splits a comma-separated list of non-negative integers into out[0..max). */
static uint32_t parse_list(const char *name, const char *s, uint64_t maxval, uint64_t *out,
                           uint32_t max)
{
	uint32_t n = 0;
	const char *p = s;
	while (*p) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);
		if (end == p || errno || v > maxval || *p == '-' || (*end && *end != ','))
			usage_error("--%s: '%s' is not a list of numbers up to %llu", name, s,
			            (unsigned long long)maxval);
		if (n == max)
			usage_error("--%s: more than %u entries", name, max);
		out[n++] = v;
		p = *end ? end + 1 : end;
	}
	return n;
}

/* Resolves HOST:PORT or [V6]:PORT, once at start-up (before any loop). */
static void resolve(const char *name, const char *hp, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon = strrchr(hp, ':');
	if (!colon || colon == hp || !colon[1] || (size_t)(colon - hp) >= sizeof(host))
		usage_error("--%s: '%s' is not HOST:PORT", name, hp);
	const char *h = hp;
	size_t hl = (size_t)(colon - hp);
	if (h[0] == '[' && h[hl - 1] == ']')
		h++, hl -= 2;
	memcpy(host, h, hl);
	host[hl] = '\0';
	struct addrinfo hints = {0}, *res;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0)
		usage_error("--%s: cannot resolve '%s': %s", name, hp, gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
}

static void parse_src(const char *s)
{
	char tmp[128];
	const char *p = s;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		if (n == 0 || n >= sizeof(tmp) || L.nsrc == MAX_SRC)
			usage_error("--src: bad list '%s'", s);
		memcpy(tmp, p, n);
		tmp[n] = '\0';
		struct sockaddr_storage *ss = &L.src[L.nsrc];
		struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET, tmp, &v4->sin_addr) == 1) {
			v4->sin_family = AF_INET;
			L.srclen[L.nsrc] = sizeof(*v4);
		} else if (inet_pton(AF_INET6, tmp, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6;
			L.srclen[L.nsrc] = sizeof(*v6);
		} else {
			usage_error("--src: '%s' is not an IP address", tmp);
		}
		if (ss->ss_family != L.ws.ss_family)
			usage_error("--src: '%s' is not of the --ws address family", tmp);
		L.nsrc++;
		p += n + (comma ? 1 : 0);
	}
}

/* Raises the soft descriptor limit to the hard one if need be; refuses a
 * run in which a client process would run out of descriptors. */
static void check_nofile(void)
{
	uint64_t per = (L.clients + L.procs - 1) / L.procs + FD_MARGIN;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < per) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > per ? per : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < per) {
		uint64_t room = rl.rlim_cur > FD_MARGIN ? rl.rlim_cur - FD_MARGIN : 1;
		usage_error("%u clients over %u processes need %llu descriptors per process, but "
		            "RLIMIT_NOFILE is %llu: use --procs %llu or more",
		            L.clients, L.procs, (unsigned long long)per,
		            (unsigned long long)rl.rlim_cur,
		            (unsigned long long)((L.clients + room - 1) / room));
	}
}

static void parse_options(int argc, char **argv)
{
	char err[512];
	int rc = config_load(opt_table, &L.o, argc, argv, err, sizeof(err), NULL);
	if (rc == 1) {
		config_help(opt_table, usage_text, stdout);
		exit(0);
	}
	if (rc < 0) {
		fprintf(stderr, "tidings-loadgen: %s\n", err);
		exit(EXIT_USAGE);
	}
	if (!*L.o.ws)
		usage_error("--ws is required");
	if (!*L.o.secret)
		usage_error("--secret is required");
	if (L.o.path[0] != '/' || strlen(L.o.path) > 1024)
		usage_error("--path must start with '/' (and be shorter than 1 kB)");
	L.clients = (uint32_t)L.o.clients;
	L.procs = (uint32_t)L.o.procs;
	L.users = L.o.users ? (uint32_t)L.o.users : L.clients;
	resolve("ws", L.o.ws, &L.ws, &L.wslen);
	parse_src(L.o.src);

	uint64_t v[MAX_STEPS > MAX_PIDS ? MAX_STEPS : MAX_PIDS];
	L.nsteps = parse_list("steps", L.o.steps, 10000000, v, MAX_STEPS);
	for (uint32_t i = 0; i < L.nsteps; i++)
		L.steps[i] = (uint32_t)v[i];
	L.npids = (int)parse_list("pids", L.o.pids, 0x7fffffff, v, MAX_PIDS);
	for (int i = 0; i < L.npids; i++)
		L.pids[i] = (int)v[i];
	if (L.nsteps) {
		if (!*L.o.emit || !*L.o.api_key)
			usage_error("--steps needs --emit and --api-key");
		resolve("emit", L.o.emit, &L.emit, &L.emitlen);
	}
	check_nofile();
}

/* One token per user, minted once: {"id","exp","jti","iat"} as Open WebUI's. */
static void mint_tokens(void)
{
	L.tokens = calloc(L.users, sizeof(*L.tokens));
	if (!L.tokens) {
		fprintf(stderr, "tidings-loadgen: out of memory\n");
		exit(1);
	}
	int64_t now = clock_wall_s();
	buf b;
	buf_init(&b, JWT_MAX_TOKEN);
	for (uint32_t u = 0; u < L.users; u++) {
		uint8_t r[16];
		char payload[256];
		rand_bytes(r, sizeof(r));
		int n = snprintf(
		    payload, sizeof(payload),
		    "{\"id\":\"bench-u%u\",\"exp\":%lld,\"jti\":\"%02x%02x%02x%02x-%02x%02x-"
		    "%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x\",\"iat\":%lld}",
		    u, (long long)now + 86400, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
		    r[9], r[10], r[11], r[12], r[13], r[14], r[15], (long long)now);
		buf_reset(&b);
		if (jwt_sign_hs256(&b, slice_make(payload, (size_t)n), L.o.secret,
		                   strlen(L.o.secret)) < 0 ||
		    !(L.tokens[u] = strndup(b.data, b.len))) {
			fprintf(stderr, "tidings-loadgen: cannot mint a token\n");
			exit(1);
		}
	}
	buf_dispose(&b);
}

/* ---- samples and JSON ---- */

static void take(sample *s)
{
	for (int i = 0; i < L.npids; i++) {
		s->cpu[i] = lg_proc_cpu_s(L.pids[i]);
		s->rss[i] = lg_proc_rss_kb(L.pids[i]);
	}
	s->self_cpu = lg_self_cpu_s();
	s->us = clock_mono_us();
}

static double server_cpu(const sample *a, const sample *b, int i)
{
	return a->cpu[i] < 0 || b->cpu[i] < 0 ? 0 : b->cpu[i] - a->cpu[i];
}

static double server_cpu_total(const sample *a, const sample *b)
{
	double t = 0;
	for (int i = 0; i < L.npids; i++)
		t += server_cpu(a, b, i);
	return t;
}

static long rss_delta(const sample *a, const sample *b)
{
	long t = 0;
	for (int i = 0; i < L.npids; i++)
		if (a->rss[i] >= 0 && b->rss[i] >= 0)
			t += b->rss[i] - a->rss[i];
	return t;
}

static void j_rss(buf *b, const sample *s)
{
	buf_append_byte(b, '{');
	for (int i = 0; i < L.npids; i++)
		buf_appendf(b, "%s\"%d\":%ld", i ? "," : "", L.pids[i], s->rss[i]);
	buf_append_byte(b, '}');
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

/* ---- the children ---- */

static void send_cmd(uint32_t type, uint64_t first_seq)
{
	lg_cmd cmd = {type, L.step, first_seq};
	for (uint32_t i = 0; i < L.procs; i++) {
		kid *k = &L.kids[i];
		if (!k->alive)
			continue;
		/* Commands are smaller than PIPE_BUF and the child reads its
		 * pipe all the time, so this write neither splits nor stalls. */
		if (write(k->cmd_fd, &cmd, sizeof(cmd)) == (ssize_t)sizeof(cmd))
			k->waiting = type != LG_CMD_QUIT;
	}
	if (type != LG_CMD_QUIT) {
		struct timeval tv = {WAIT_MS / 1000, 0};
		event_add(L.watchdog, &tv);
	}
}

static void kid_gone(kid *k, const char *why)
{
	if (!k->alive)
		return;
	fprintf(stderr, "tidings-loadgen: client process %d %s\n", (int)k->pid, why);
	k->alive = 0;
	k->waiting = 0;
	event_del(k->ev); /* freed at exit: this may run inside its callback */
	close(k->cmd_fd);
	close(k->rep_fd);
}

static void advance(void);

static int on_stats(kid *k, const char *body, size_t len)
{
	size_t want = sizeof(lg_report) + sizeof(lg_hist) + (size_t)L.users * sizeof(uint32_t);
	if (len != want)
		return -1;
	memcpy(&L.tmp, body + sizeof(lg_report), sizeof(L.tmp));
	lg_hist_merge(&L.hist, &L.tmp);
	memcpy(L.user_tmp, body + sizeof(lg_report) + sizeof(lg_hist),
	       (size_t)L.users * sizeof(uint32_t));
	for (uint32_t u = 0; u < L.users; u++)
		L.ready_per_user[u] += L.user_tmp[u];
	return 0;
}

static void on_kid(evutil_socket_t fd, short what, void *arg)
{
	kid *k = arg;
	if (buf_reserve(&k->in, 65536) < 0) {
		kid_gone(k, "sent too much");
		advance();
		return;
	}
	ssize_t r = read(fd, k->in.data + k->in.len, k->in.cap - k->in.len);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		kid_gone(k, "exited");
		advance();
		return;
	}
	k->in.len += (size_t)r;
	lg_msg_hdr h;
	const char *body;
	size_t n;
	while ((n = lg_ipc_next(&k->in, &h, &body)) > 0) {
		if (h.len < sizeof(lg_report) ||
		    (h.type == LG_MSG_STATS && on_stats(k, body, h.len) < 0)) {
			kid_gone(k, "sent a malformed message");
			kill(k->pid, SIGKILL);
			break;
		}
		memcpy(&k->rep, body, sizeof(k->rep));
		if (h.type == LG_MSG_SNAP_ACK)
			k->cpu_mark = k->rep.cpu_s;
		k->waiting = 0;
		buf_consume(&k->in, n);
	}
	advance();
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	for (uint32_t i = 0; i < L.procs; i++) {
		kid *k = &L.kids[i];
		if (k->alive && k->waiting) {
			kill(k->pid, SIGKILL);
			kid_gone(k, "did not answer in time: killed");
		}
	}
	advance();
}

static void spawn(void)
{
	L.kids = calloc(L.procs, sizeof(*L.kids));
	if (!L.kids) {
		fprintf(stderr, "tidings-loadgen: out of memory\n");
		exit(1);
	}
	fflush(NULL);
	for (uint32_t i = 0; i < L.procs; i++) {
		int cmd[2], rep[2];
		lg_swarm_opts so = {0};
		so.index = i;
		so.procs = L.procs;
		so.clients = L.clients;
		so.users = L.users;
		so.dst = (struct sockaddr *)&L.ws;
		so.dstlen = L.wslen;
		if (L.nsrc) {
			so.src = (struct sockaddr *)&L.src[i % L.nsrc];
			so.srclen = L.srclen[i % L.nsrc];
		}
		so.host = L.o.ws;
		so.path = L.o.path;
		so.tokens = L.tokens;
		so.user_join = L.o.user_join;
		so.connect_rate = (uint32_t)L.o.connect_rate;
		so.connect_timeout_ms = (uint32_t)L.o.connect_timeout * 1000;
		/* Drawn here, before the fork: the children inherit the random
		 * pool and would all draw the same bytes from it. */
		rand_bytes(so.nonce, sizeof(so.nonce));
		rand_bytes(&so.seed, sizeof(so.seed));
		if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
			perror("tidings-loadgen: pipe");
			exit(1);
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("tidings-loadgen: fork");
			exit(1);
		}
		if (pid == 0) {
			/* Only the parent may hold the other children's pipes, or
			 * they would not see EOF when it goes away. */
			for (uint32_t j = 0; j < i; j++) {
				close(L.kids[j].cmd_fd);
				close(L.kids[j].rep_fd);
			}
			close(cmd[1]);
			close(rep[0]);
			so.cmd_fd = cmd[0];
			so.rep_fd = rep[1];
			_exit(lg_swarm_run(&so));
		}
		close(cmd[0]);
		close(rep[1]);
		kid *k = &L.kids[i];
		k->pid = pid;
		k->cmd_fd = cmd[1];
		k->rep_fd = rep[0];
		k->alive = 1;
		k->waiting = 1; /* for LG_MSG_CONNECTED */
		buf_init(&k->in, 64u << 20);
	}
}

static int waiting(void)
{
	for (uint32_t i = 0; i < L.procs; i++)
		if (L.kids[i].alive && L.kids[i].waiting)
			return 1;
	return 0;
}

/* ---- phases ---- */

static void after(uint64_t ms, int phase)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	L.phase = phase;
	event_add(L.timer, &tv);
}

static void open_producer(void)
{
	lg_producer_opts po = {0};
	po.base = L.base;
	po.dst = (struct sockaddr *)&L.emit;
	po.dstlen = L.emitlen;
	po.host = L.o.emit;
	po.api_key = L.o.api_key;
	po.users = L.users;
	po.conns = (uint32_t)L.o.producers;
	po.pipeline = (uint32_t)L.o.pipeline;
	po.pad_bytes = (uint32_t)L.o.payload_bytes;
	po.persist = L.o.persist;
	po.answers = (uint32_t)L.o.answers;
	po.answer_len = (uint32_t)L.o.answer_len;
	po.batch = (uint32_t)L.o.batch;
	L.prod = lg_producer_create(&po);
	if (!L.prod) {
		fprintf(stderr, "tidings-loadgen: out of memory\n");
		exit(1);
	}
}

static void connect_done(void)
{
	take(&L.connected);
	double kids_cpu = 0;
	for (uint32_t i = 0; i < L.procs; i++) {
		const lg_report *r = &L.kids[i].rep;
		L.conn.ok += r->ok;
		for (int f = 0; f < LG_FAIL_N; f++)
			L.conn.fail[f] += r->fail[f];
		kids_cpu += r->cpu_s; /* a child's counters started at zero with it */
	}
	/* Counted from the clients: a child that died took its share with it. */
	L.conn.failed = L.clients - L.conn.ok;
	L.conn.cpu_s = L.connected.self_cpu - L.before.self_cpu + kids_cpu;
	double secs = (double)(L.connected.us - L.before.us) / 1e6;
	double scpu = server_cpu_total(&L.before, &L.connected);
	fprintf(stderr,
	        "connect: %llu/%u ok, %llu failed (tcp %llu, handshake %llu, refused %llu, "
	        "timeout %llu, closed %llu) in %.2f s (%.0f/s); server %.2f s cpu (%.1f us/conn), "
	        "rss %+ld kB; loadgen %.2f s cpu\n",
	        (unsigned long long)L.conn.ok, L.clients, (unsigned long long)L.conn.failed,
	        (unsigned long long)L.conn.fail[LG_FAIL_TCP],
	        (unsigned long long)L.conn.fail[LG_FAIL_HANDSHAKE],
	        (unsigned long long)L.conn.fail[LG_FAIL_REFUSED],
	        (unsigned long long)L.conn.fail[LG_FAIL_TIMEOUT],
	        (unsigned long long)L.conn.fail[LG_FAIL_CLOSED], secs,
	        ratio((double)L.conn.ok, secs), scpu, ratio(scpu * 1e6, (double)L.conn.ok),
	        rss_delta(&L.before, &L.connected), L.conn.cpu_s);
	/* Opened now, so the connections are up when the first step begins. */
	if (L.nsteps)
		open_producer();
	after(SETTLE_MS + (uint64_t)L.o.idle_seconds * 1000, PH_SETTLE);
}

static void step_begin(void)
{
	lg_hist_reset(&L.hist);
	memset(L.ready_per_user, 0, (size_t)L.users * sizeof(*L.ready_per_user));
	L.phase = PH_SNAP;
	send_cmd(LG_CMD_SNAP, lg_producer_next_seq(L.prod));
}

static void final_begin(void)
{
	L.phase = PH_FINAL;
	send_cmd(LG_CMD_STATS, 0);
}

static void idle_done(void)
{
	take(&L.idle);
	long d = rss_delta(&L.before, &L.idle);
	fprintf(stderr, "idle: %lld s; server rss %+ld kB since start (%.0f bytes/conn)\n",
	        (long long)L.o.idle_seconds, d, ratio((double)d * 1024, (double)L.conn.ok));
	L.step = 0;
	if (L.nsteps)
		step_begin();
	else
		final_begin();
}

/* When each step's producer started (wall clock, ms): lets a caller line
 * up what it observes elsewhere (rows appearing in SQL) with the sends. */
static uint64_t step_started_ms[MAX_STEPS];

static void step_run(void)
{
	event_del(L.watchdog);
	take(&L.s0);
	step_started_ms[L.step] = clock_wall_ms();
	lg_producer_start(L.prod, L.steps[L.step], (uint64_t)L.o.step_seconds * 1000);
	after((uint64_t)L.o.step_seconds * 1000, PH_RUN);
}

/* The figures of one step, merged from the producer and the children. */
typedef struct step_result {
	uint32_t rate;
	lg_producer_stats ps;
	lg_report sum;
	uint64_t expected, backlog, p50, p99, p999;
	int64_t lost;
	double secs, server_cpu, loadgen_cpu;
} step_result;

static void step_collect(step_result *r)
{
	memset(r, 0, sizeof(*r));
	r->rate = L.steps[L.step];
	lg_producer_finish(L.prod, &r->ps);
	double kids_cpu = 0;
	for (uint32_t i = 0; i < L.procs; i++) {
		const kid *k = &L.kids[i];
		if (!k->alive)
			continue; /* its counts died with it, and so did its share of expected */
		r->sum.deliveries += k->rep.deliveries;
		r->sum.late += k->rep.late;
		r->sum.bad += k->rep.bad;
		r->sum.dropped += k->rep.dropped;
		kids_cpu += k->rep.cpu_s - k->cpu_mark;
	}
	/* Exact even when clients failed or users have uneven shares: each
	 * user's accepted emits times that user's clients connected at the
	 * snapshot. */
	for (uint32_t u = 0; u < L.users; u++)
		r->expected += r->ps.ok_per_user[u] * L.ready_per_user[u];
	r->lost = (int64_t)r->expected - (int64_t)r->sum.deliveries;
	r->backlog = r->ps.due - r->ps.sent;
	r->secs = (double)L.o.step_seconds;
	r->server_cpu = server_cpu_total(&L.s0, &L.s1);
	r->loadgen_cpu = L.s1.self_cpu - L.s0.self_cpu + kids_cpu;
	r->p50 = lg_hist_quantile(&L.hist, 0.50);
	r->p99 = lg_hist_quantile(&L.hist, 0.99);
	r->p999 = lg_hist_quantile(&L.hist, 0.999);
}

static void step_json(buf *b, const step_result *r)
{
	buf_appendf(b, "%s{\"rate\":%u,\"seconds\":%.0f,\"started_ms\":%llu,\"emits_sent\":%llu,",
	            L.step ? "," : "", r->rate, r->secs,
	            (unsigned long long)step_started_ms[L.step], (unsigned long long)r->ps.sent);
	buf_appendf(b, "\"emit_errors\":%llu,", (unsigned long long)r->ps.errors);
	buf_appendf(b, "\"emit_backlog\":%llu,\"emit_backlog_max\":%llu,\"emits_per_s\":%.1f,",
	            (unsigned long long)r->backlog, (unsigned long long)r->ps.backlog_max,
	            (double)r->ps.sent / r->secs);
	buf_appendf(b, "\"deliveries\":%llu,\"expected\":%llu,\"lost\":%lld,\"late\":%llu,",
	            (unsigned long long)r->sum.deliveries, (unsigned long long)r->expected,
	            (long long)r->lost, (unsigned long long)r->sum.late);
	buf_appendf(b,
	            "\"deliveries_per_s\":%.1f,\"p50_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,",
	            (double)r->sum.deliveries / r->secs, (unsigned long long)r->p50,
	            (unsigned long long)r->p99, (unsigned long long)r->p999);
	buf_appendf(b, "\"max_us\":%llu,\"server_cpu_s\":{", (unsigned long long)L.hist.max);
	for (int i = 0; i < L.npids; i++)
		buf_appendf(b, "\"%d\":%.3f,", L.pids[i], server_cpu(&L.s0, &L.s1, i));
	buf_appendf(b, "\"total\":%.3f},\"server_us_per_delivery\":%.3f,\"rss_kb\":", r->server_cpu,
	            ratio(r->server_cpu * 1e6, (double)r->sum.deliveries));
	j_rss(b, &L.s1);
	buf_appendf(b, ",\"loadgen_cpu_s\":%.3f}", r->loadgen_cpu);
}

static void step_line(const step_result *r)
{
	fprintf(stderr,
	        "step %u/s: %llu emits sent (%llu errors, %llu unsent), %llu/%llu deliveries, "
	        "%lld lost, %llu late, %.0f/s; latency p50 %llu p99 %llu p99.9 %llu max %llu us; "
	        "server %.2f s cpu (%.2f us/delivery); loadgen %.2f s cpu\n",
	        r->rate, (unsigned long long)r->ps.sent, (unsigned long long)r->ps.errors,
	        (unsigned long long)r->backlog, (unsigned long long)r->sum.deliveries,
	        (unsigned long long)r->expected, (long long)r->lost,
	        (unsigned long long)r->sum.late, (double)r->sum.deliveries / r->secs,
	        (unsigned long long)r->p50, (unsigned long long)r->p99, (unsigned long long)r->p999,
	        (unsigned long long)L.hist.max, r->server_cpu,
	        ratio(r->server_cpu * 1e6, (double)r->sum.deliveries), r->loadgen_cpu);
	if (r->ps.last_error)
		fprintf(stderr, "step %u/s: last emit error: %s %d\n", r->rate,
		        r->ps.last_error < 0 ? "connection" : "HTTP status", r->ps.last_error);
	if (r->sum.bad || r->sum.dropped)
		fprintf(stderr, "step %u/s: %llu events with an unreadable ts, %llu oversized\n",
		        r->rate, (unsigned long long)r->sum.bad,
		        (unsigned long long)r->sum.dropped);
}

static void step_report(void)
{
	step_result r;
	step_collect(&r);
	step_json(&L.json_steps, &r);
	step_line(&r);
	if (++L.step < L.nsteps)
		step_begin();
	else
		final_begin();
}

static int write_json(uint64_t disconnects, uint64_t ready)
{
	buf b;
	buf_init(&b, 0);
	double secs = (double)(L.connected.us - L.before.us) / 1e6;
	double scpu = server_cpu_total(&L.before, &L.connected);
	buf_appendf(&b, "{\"clients\":%u,\"procs\":%u,\"users\":%u,", L.clients, L.procs, L.users);
	buf_appendf(&b, "\"connect\":{\"ok\":%llu,\"failed\":%llu,", (unsigned long long)L.conn.ok,
	            (unsigned long long)L.conn.failed);
	buf_appendf(
	    &b,
	    "\"failed_by\":{\"tcp\":%llu,\"handshake\":%llu,\"refused\":%llu,\"timeout\":%llu,"
	    "\"closed\":%llu},",
	    (unsigned long long)L.conn.fail[LG_FAIL_TCP],
	    (unsigned long long)L.conn.fail[LG_FAIL_HANDSHAKE],
	    (unsigned long long)L.conn.fail[LG_FAIL_REFUSED],
	    (unsigned long long)L.conn.fail[LG_FAIL_TIMEOUT],
	    (unsigned long long)L.conn.fail[LG_FAIL_CLOSED]);
	buf_appendf(
	    &b,
	    "\"seconds\":%.3f,\"per_s\":%.1f,\"server_cpu_s\":%.3f,\"server_us_per_conn\":%.1f,",
	    secs, ratio((double)L.conn.ok, secs), scpu, ratio(scpu * 1e6, (double)L.conn.ok));
	/* Each process apart: the figure per connection is the gateway's, not
	 * the gateway's plus the workers' and Redis' (the total above). */
	buf_appendf(&b, "\"server_cpu_by_pid\":{");
	for (int i = 0; i < L.npids; i++)
		buf_appendf(&b, "%s\"%d\":%.3f", i ? "," : "", L.pids[i],
		            server_cpu(&L.before, &L.connected, i));
	buf_appendf(&b, "},");
	buf_appendf(&b, "\"rss_kb_delta\":%ld,\"loadgen_cpu_s\":%.3f},",
	            rss_delta(&L.before, &L.connected), L.conn.cpu_s);
	buf_appendf(&b,
	            "\"idle\":{\"seconds\":%lld,\"rss_kb_before\":", (long long)L.o.idle_seconds);
	j_rss(&b, &L.before);
	buf_appendf(&b, ",\"rss_kb_after\":");
	j_rss(&b, &L.idle);
	buf_appendf(&b, ",\"bytes_per_conn\":%.0f},\"steps\":[",
	            ratio((double)rss_delta(&L.before, &L.idle) * 1024, (double)L.conn.ok));
	buf_append_slice(&b, buf_slice(&L.json_steps));
	buf_appendf(&b, "],\"disconnects\":%llu,\"connected_at_end\":%llu}\n",
	            (unsigned long long)disconnects, (unsigned long long)ready);

	int rc;
	if (*L.o.json) {
		FILE *f = fopen(L.o.json, "w");
		rc = f && fwrite(b.data, 1, b.len, f) == b.len ? 0 : -1;
		if (f && fclose(f) != 0)
			rc = -1;
	} else {
		rc = fwrite(b.data, 1, b.len, stdout) == b.len && fflush(stdout) == 0 ? 0 : -1;
	}
	if (rc < 0)
		fprintf(stderr, "tidings-loadgen: cannot write %s: %s\n",
		        *L.o.json ? L.o.json : "the results", strerror(errno));
	buf_dispose(&b);
	return rc;
}

static void final_done(void)
{
	event_del(L.watchdog);
	uint64_t disconnects = 0, ready = 0;
	for (uint32_t i = 0; i < L.procs; i++) {
		const kid *k = &L.kids[i];
		disconnects += k->rep.disconnects;
		if (k->alive)
			ready += k->rep.ready;
		else
			disconnects += k->rep.ready; /* its clients went with it */
	}
	fprintf(stderr, "end: %llu connected, %llu disconnects\n", (unsigned long long)ready,
	        (unsigned long long)disconnects);
	send_cmd(LG_CMD_QUIT, 0);
	for (uint32_t i = 0; i < L.procs; i++)
		waitpid(L.kids[i].pid, NULL, 0);
	int few = (double)L.conn.ok < CONNECTED_PART * (double)L.clients;
	if (write_json(disconnects, ready) < 0 || few)
		L.exit_code = EXIT_FAIL; /* no results, or too few clients connected */
	L.phase = PH_DONE;
	event_base_loopbreak(L.base);
}

/* Moves the run on once nobody is waited for: called after each child
 * message, child death and watchdog. */
static void advance(void)
{
	if (waiting())
		return;
	switch (L.phase) {
	case PH_CONNECT: connect_done(); break;
	case PH_SNAP: step_run(); break;
	case PH_STATS: step_report(); break;
	case PH_FINAL: final_done(); break;
	default: break;
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	switch (L.phase) {
	case PH_SETTLE: idle_done(); break;
	case PH_RUN:
		lg_producer_stop(L.prod);
		after((uint64_t)L.o.drain_seconds * 1000, PH_DRAIN);
		break;
	case PH_DRAIN:
		take(&L.s1);
		L.phase = PH_STATS;
		send_cmd(LG_CMD_STATS, 0);
		break;
	default: break;
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	fprintf(stderr, "tidings-loadgen: interrupted\n");
	for (uint32_t i = 0; i < L.procs; i++)
		if (L.kids[i].alive)
			kill(L.kids[i].pid, SIGTERM);
	for (uint32_t i = 0; i < L.procs; i++)
		waitpid(L.kids[i].pid, NULL, 0);
	L.exit_code = 1;
	event_base_loopbreak(L.base);
}

int main(int argc, char **argv)
{
	parse_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	mint_tokens();
	L.ready_per_user = calloc(L.users, sizeof(*L.ready_per_user));
	L.user_tmp = calloc(L.users, sizeof(*L.user_tmp));
	if (!L.ready_per_user || !L.user_tmp) {
		fprintf(stderr, "tidings-loadgen: out of memory\n");
		return 1;
	}
	buf_init(&L.json_steps, 0);

	take(&L.before);
	spawn();
	/* The loop is created after the fork: a child must not share the
	 * parent's epoll instance. */
	L.base = event_base_new();
	if (!L.base) {
		fprintf(stderr, "tidings-loadgen: cannot create the event loop\n");
		return 1;
	}
	L.timer = event_new(L.base, -1, 0, on_timer, NULL);
	L.watchdog = event_new(L.base, -1, 0, on_watchdog, NULL);
	L.sigint = evsignal_new(L.base, SIGINT, on_signal, NULL);
	L.sigterm = evsignal_new(L.base, SIGTERM, on_signal, NULL);
	event_add(L.sigint, NULL);
	event_add(L.sigterm, NULL);
	for (uint32_t i = 0; i < L.procs; i++) {
		kid *k = &L.kids[i];
		fcntl(k->rep_fd, F_SETFL, fcntl(k->rep_fd, F_GETFL) | O_NONBLOCK);
		k->ev = event_new(L.base, k->rep_fd, EV_READ | EV_PERSIST, on_kid, k);
		event_add(k->ev, NULL);
	}
	L.phase = PH_CONNECT;
	event_base_dispatch(L.base);

	lg_producer_destroy(L.prod);
	for (uint32_t i = 0; i < L.procs; i++) {
		if (L.kids[i].ev)
			event_free(L.kids[i].ev);
		buf_dispose(&L.kids[i].in);
	}
	event_free(L.timer);
	event_free(L.watchdog);
	event_free(L.sigint);
	event_free(L.sigterm);
	event_base_free(L.base);
	return L.exit_code;
}
