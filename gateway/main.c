/*
 * tidings-gateway: holds browser connections (WebSocket and long-polling),
 * speaks Engine.IO v4 / Socket.IO v5, verifies JWTs, forwards client events
 * to Redis ingress streams and delivers what workers publish to its own
 * delivery stream. One single-threaded libevent loop per process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "bus.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/redis.h"
#include "conformance.h"
#include "eio_sock.h"
#include "gw.h"
#include "httpd.h"
#include "origin.h"
#include "sio_sock.h"

#define WHEEL_TICK_MS 2
#define WHEEL_SLOTS   4096
#define ACCEPT_BATCH  64
#define DRAIN_MS      1000

gw_state gw;
static uint64_t now_cache;

uint64_t gw_now(void)
{
	return now_cache;
}

void gw_now_update(void)
{
	now_cache = clock_mono_ms();
}

/* A burst of connections (or of closes) leaves the heap full of freed
 * transient blocks (request heads, handshake buffers, parsed tokens and
 * replies) between the long-lived ones, which malloc keeps resident. After
 * the connection count has moved by a few hundred, hand the free pages back
 * to the kernel, so that idle connections cost what they hold. */
#define TRIM_EVERY_MS 5000
#define TRIM_CHURN    256
static void trim_tick(evutil_socket_t fd, short what, void *arg)
{
	static uint64_t at_last_trim;
	uint64_t n = conn_count;
	if (n > at_last_trim + TRIM_CHURN || n + TRIM_CHURN < at_last_trim) {
		malloc_trim(0);
		at_last_trim = n;
	}
}

static void wheel_tick(evutil_socket_t fd, short what, void *arg)
{
	gw_now_update();
	wheel_advance(&gw.wheel, gw_now());
	gw_wheel_kick(0);
}

/* The loop's one timer wakes at wake_at. A timer armed for earlier than
 * that moves the wake-up forward: without it, a 200 ms pong deadline
 * armed while the loop slept towards a wake half a second away would fire
 * late. */
static uint64_t wake_at;

void gw_wheel_kick(uint64_t due_ms)
{
	if (!gw.wheel_ev)
		return;
	int pending = event_pending(gw.wheel_ev, EV_TIMEOUT, NULL);
	if (pending && (due_ms == 0 || due_ms >= wake_at))
		return;
	uint64_t now = gw_now();
	int64_t ms;
	if (pending) {
		/* Earlier than the planned wake-up: only the new timer can be
		 * sooner. One tick more: a timer is due once its tick has passed. */
		ms = (int64_t)(due_ms > now ? due_ms - now : 0) + WHEEL_TICK_MS;
	} else {
		/* Not planned (the wheel was empty, or its tick is running): the
		 * wheel knows its next due tick, whichever timer that is. */
		ms = wheel_next_ms(&gw.wheel, now);
		if (ms < 0)
			return;
	}
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(gw.wheel_ev, &tv);
	wake_at = now + (uint64_t)ms;
}

/* ---- listeners ---- */

typedef struct listener {
	int fd;
	struct event *ev;
	httpd_route_fn *route;
	const char *name;
} listener;

static listener pub, adm;

static void public_route(conn *c, const http_request *req, slice body)
{
	slice path = req->path;
	size_t pl = strlen(gw.cfg.path);
	int trailing = path.len == pl + 1 && path.base[pl] == '/';
	if ((path.len == pl || trailing) && memcmp(path.base, gw.cfg.path, pl) == 0) {
		eio_handle(c, req, body, &sio_eio_handler, 1);
		return;
	}
	if (gw.cfg.conformance) {
		if (slice_eq_cstr(path, "/engine.io/") || slice_eq_cstr(path, "/engine.io")) {
			eio_handle(c, req, body, &conformance_eio_echo, 1);
			return;
		}
		if (slice_eq_cstr(path, "/ws-echo")) {
			conformance_ws_echo(c, req);
			return;
		}
	}
	httpd_error(c, 404, "not found");
}

/* Connections per client address, when limited: one small counter per
 * address that has connections, keyed by its own bytes. */
typedef struct ip_count {
	uint32_t ip;
	uint32_t n;
} ip_count;

static int ip_admit(uint32_t ip)
{
	if (!gw.cfg.max_conns_per_ip || !ip)
		return 1;
	ip_count *ic = map_get(&gw.ip_counts, slice_make(&ip, sizeof(ip)));
	if (!ic) {
		ic = calloc(1, sizeof(*ic));
		if (!ic)
			return 0;
		ic->ip = ip;
		if (map_put(&gw.ip_counts, slice_make(&ic->ip, sizeof(ic->ip)), ic) < 0) {
			free(ic);
			return 0;
		}
	}
	if (ic->n >= (uint64_t)gw.cfg.max_conns_per_ip)
		return 0;
	ic->n++;
	return 1;
}

static void ip_release(conn *c)
{
	if (!gw.cfg.max_conns_per_ip || !c->peer_ip)
		return;
	ip_count *ic = map_get(&gw.ip_counts, slice_make(&c->peer_ip, sizeof(c->peer_ip)));
	if (ic && --ic->n == 0) {
		map_del(&gw.ip_counts, slice_make(&ic->ip, sizeof(ic->ip)));
		free(ic);
	}
}

/* Connection-rate limit: a token bucket refilled at max_connect_rate per
 * second, holding at most one second's worth, so a reconnect storm is let
 * in at a pace Redis and the workers can follow. */
static int rate_admit(void)
{
	static double tokens;
	static uint64_t last_ms;
	double rate = (double)gw.cfg.max_connect_rate;
	if (rate <= 0)
		return 1;
	uint64_t now = gw_now();
	tokens += (double)(now - last_ms) * rate / 1000.0;
	last_ms = now;
	if (tokens > rate)
		tokens = rate;
	if (tokens < 1)
		return 0;
	tokens -= 1;
	return 1;
}

/* Answers 503 on a connection we will not serve, holding no state for it. */
static void refuse(int fd, const char *why)
{
	static const char busy[] =
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
	gw.m.handshake_fail[HS_FAIL_TOO_MANY]++;
	log_debug("refused a connection: %s", why);
	if (write(fd, busy, sizeof(busy) - 1) < 0) {
		/* nothing more to do for a refused peer */
	}
	close(fd);
}

/* Linux gives an accepted socket the listener's TCP_NODELAY (set in
 * listen_on), which saves a system call per connection. Whether it did is
 * read once, on the first socket; a kernel that does not gets the option
 * set on each. */
static void set_nodelay(int fd)
{
	static int inherited = -1;
	int one = 1;
	if (inherited < 0) {
		int v = 0;
		socklen_t len = sizeof(v);
		inherited = getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && v;
	}
	if (!inherited)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	listener *l = arg;
	gw_now_update();
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss = {0};
		socklen_t sl = sizeof(ss);
		int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_error("accept on %s: %s", l->name, strerror(errno));
			return;
		}
		if (l == &pub && !rate_admit()) {
			refuse(cfd, "connection rate limit");
			continue;
		}
		uint32_t ip =
		    ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_addr.s_addr : 0;
		if (l == &pub && !ip_admit(ip)) {
			refuse(cfd, "too many from one address");
			continue;
		}
		set_nodelay(cfd);
		conn *c = conn_create(cfd, NULL, NULL);
		if (!c) {
			if (l == &pub)
				ip_release(&(conn){.peer_ip = ip});
			continue;
		}
		if (l == &pub)
			c->peer_ip = ip;
		gw.m.accepted++;
		httpd_start(c, l->route);
	}
}

static int listen_on(listener *l, const char *addr, httpd_route_fn *route, const char *name)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
		log_error("%s: '%s' is not host:port", name, addr);
		return -1;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(colon + 1))};
	if (!*host || strcmp(host, "0.0.0.0") == 0)
		sa.sin_addr.s_addr = INADDR_ANY;
	else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		log_error("%s: '%s' is not an IPv4 address", name, host);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Several gateway processes share the public port; the kernel spreads
	 * connections among them. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* see set_nodelay */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
		log_error("%s: cannot listen on %s: %s", name, addr, strerror(errno));
		close(fd);
		return -1;
	}
	l->fd = fd;
	l->route = route;
	l->name = name;
	l->ev = event_new(gw.base, fd, EV_READ | EV_PERSIST, on_accept, l);
	event_add(l->ev, NULL);
	return 0;
}

/* ---- shutdown ---- */

static void drain_done(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(gw.base);
}

/* SIGTERM: readiness goes 503 at once, new connections stop, every
 * session is closed (WebSocket close 1001 via Engine.IO close), sessions
 * are removed from Redis, and the process exits well inside Kubernetes'
 * grace period. */
static void on_term(evutil_socket_t sig, short what, void *arg)
{
	if (gw.draining)
		return;
	gw_now_update();
	gw.draining = 1;
	log_info("signal %d: draining %llu sessions", (int)sig, (unsigned long long)eio_count);
	if (pub.ev)
		event_del(pub.ev);
	map_entry *e;
	for (size_t i = 0; (e = map_next(&gw.eio_by_sid, &i)) != NULL;)
		eio_close(e->value, "server shutting down");
	bus_shutdown();
	struct timeval tv = {DRAIN_MS / 1000, (DRAIN_MS % 1000) * 1000L};
	event_base_once(gw.base, -1, EV_TIMEOUT, drain_done, NULL, &tv);
}

/* ---- supervisor ---- */

static volatile sig_atomic_t sup_stop;
static void sup_signal(int sig)
{
	sup_stop = sig;
}

/* TIDINGS_PROCESSES=N: fork N gateways sharing the port, restart any that
 * dies, forward SIGTERM/SIGINT. Returns the child's index (0..N-1) in the
 * child; never returns in the parent. */
static int supervise(int n)
{
	pid_t *kids = calloc((size_t)n, sizeof(pid_t));
	/* No SA_RESTART: the signal must interrupt wait() below. */
	struct sigaction sa = {0};
	sa.sa_handler = sup_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (;;) {
		for (int i = 0; i < n && !sup_stop; i++) {
			if (kids[i] > 0)
				continue;
			pid_t p = fork();
			if (p == 0) {
				signal(SIGTERM, SIG_DFL);
				signal(SIGINT, SIG_DFL);
				free(kids);
				return i;
			}
			kids[i] = p;
		}
		int st = 0;
		pid_t dead = wait(&st);
		if (sup_stop) {
			log_info("supervisor: signal %d, stopping %d gateway processes",
			         (int)sup_stop, n);
			for (int i = 0; i < n; i++)
				if (kids[i] > 0)
					kill(kids[i], SIGTERM);
			while (wait(&st) > 0)
				;
			exit(0);
		}
		for (int i = 0; i < n; i++)
			if (kids[i] == dead) {
				log_warn("gateway process %d exited (status %d); restarting",
				         (int)dead, st);
				kids[i] = 0;
				sleep(1);
			}
	}
}

static int valid_id(const char *s)
{
	if (!*s || strlen(s) > 100)
		return 0;
	for (; *s; s++)
		if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
		      ('0' <= *s && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	char err[512];
	int rc = settings_load(&gw.cfg, argc, argv, err, sizeof(err));
	if (rc == 1) {
		config_help(settings_table,
		            "usage: tidings-gateway [--option=value ...]\n"
		            "Socket.IO gateway of Tidings. Every option can also be set in the "
		            "environment.",
		            stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "tidings-gateway: %s\n", err);
		return 2;
	}
	log_init(log_level_parse(gw.cfg.log_level),
	         strcmp(gw.cfg.log_format, "text") == 0 ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON,
	         "gateway");
	const char *why = NULL;
	if (origin_init(gw.cfg.cors, &why) < 0 ||
	    sio_namespaces_init(gw.cfg.namespaces, gw.cfg.conformance, &why) < 0) {
		fprintf(stderr, "tidings-gateway: %s\n", why);
		return 2;
	}
	if (!valid_id(gw.cfg.gateway_id)) {
		fprintf(stderr, "tidings-gateway: gateway id '%s' must be [A-Za-z0-9._-]{1,100}\n",
		        gw.cfg.gateway_id);
		return 2;
	}
	if (origin_wildcard())
		log_warn("CORS_ALLOW_ORIGIN is '*': any web page may open sockets here with its "
		         "visitors' credentials (cross-site WebSocket hijacking). Use it only for "
		         "development.");
	if (!*gw.cfg.secret)
		log_warn("no WEBUI_SECRET_KEY: every socket will be anonymous");
	if (gw.cfg.conformance)
		log_warn("conformance mode is on: echo endpoints are open (never in production)");
	signal(SIGPIPE, SIG_IGN);
	if (gw.cfg.processes > 1) {
		/* Each process is a gateway of its own in Redis (its own delivery
		 * stream and registrations): the id gets the process's index,
		 * stable across restarts of that slot. */
		int idx = supervise((int)gw.cfg.processes);
		char id[160];
		snprintf(id, sizeof(id), "%s-%d", gw.cfg.gateway_id, idx);
		free(gw.cfg.gateway_id);
		gw.cfg.gateway_id = strdup(id);
	}

	gw.base = event_base_new();
	event_base_priority_init(gw.base, 3);
	gw_now_update();
	gw.started_ms = gw_now();
	if (wheel_init(&gw.wheel, WHEEL_SLOTS, WHEEL_TICK_MS, gw_now()) < 0 ||
	    conn_global_init(gw.base, (uint64_t)gw.cfg.max_output) < 0) {
		fprintf(stderr, "tidings-gateway: out of memory\n");
		return 1;
	}
	conn_set_coalesce((uint64_t)gw.cfg.coalesce_us);
	struct event *trim_ev = event_new(gw.base, -1, EV_PERSIST, trim_tick, NULL);
	struct timeval trim_tv = {TRIM_EVERY_MS / 1000, 0};
	if (trim_ev)
		event_add(trim_ev, &trim_tv);
	gw.wheel_ev = evtimer_new(gw.base, wheel_tick, NULL);
	map_init(&gw.eio_by_sid);
	map_init(&gw.sio_by_sid);
	map_init(&gw.rooms);
	map_init(&gw.ip_counts);
	conn_freed_hook = ip_release;
	if (bus_init() < 0) {
		char red[512];
		fprintf(stderr, "tidings-gateway: bad Redis URL '%s' or key prefix too long\n",
		        redis_url_redacted(gw.cfg.redis_url, red, sizeof(red)));
		return 2;
	}
	if (listen_on(&pub, gw.cfg.listen, public_route, "listen") < 0 ||
	    listen_on(&adm, gw.cfg.admin_listen, admin_route, "admin-listen") < 0)
		return 1;
	struct event *sigterm = evsignal_new(gw.base, SIGTERM, on_term, NULL);
	struct event *sigint = evsignal_new(gw.base, SIGINT, on_term, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	char redbuf[512];
	log_info("gateway %s listening on %s (internal %s), path %s, redis %s:%s",
	         gw.cfg.gateway_id, gw.cfg.listen, gw.cfg.admin_listen, gw.cfg.path,
	         redis_url_redacted(gw.cfg.redis_url, redbuf, sizeof(redbuf)), gw.cfg.redis_prefix);
	event_base_dispatch(gw.base);
	log_info("gateway %s stopped", gw.cfg.gateway_id);
	return 0;
}
