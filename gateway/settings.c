#include "settings.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"

#define S(f)   offsetof(settings, f)
#define DAY_MS (86400000LL)

const config_opt settings_table[] = {
    {"listen", "TIDINGS_LISTEN", NULL, 0, CFG_STR, "127.0.0.1:8090", 0, 0, S(listen), 0,
     "public address (browsers, load balancer)"},
    {"admin-listen", "TIDINGS_ADMIN_LISTEN", NULL, 0, CFG_STR, "127.0.0.1:8091", 0, 0,
     S(admin_listen), 0, "internal address: /healthz, /readyz, /metrics, emit API"},
    {"path", "TIDINGS_PATH", NULL, 0, CFG_STR, "/ws/socket.io", 0, 0, S(path), 0,
     "Socket.IO endpoint path"},
    {"secret", "TIDINGS_SECRET", "WEBUI_SECRET_KEY,WEBUI_JWT_SECRET_KEY", 0, CFG_STR, "", 0, 0,
     S(secret), CFG_SECRET, "HS256 key of the JWTs (Open WebUI's WEBUI_SECRET_KEY)"},
    {"api-key", "TIDINGS_API_KEY", NULL, 0, CFG_STR, "", 0, 0, S(api_key), CFG_SECRET,
     "bearer token for POST /api/v1/emit on the internal port (empty: the API is off)"},
    {"redis-url", "TIDINGS_REDIS_URL", "WEBSOCKET_REDIS_URL,REDIS_URL", 0, CFG_STR,
     "redis://127.0.0.1:6379/0", 0, 0, S(redis_url), 0,
     "Redis server (redis://[:pw@]host:port/db)"},
    {"redis-prefix", "TIDINGS_REDIS_PREFIX", NULL, 0, CFG_STR, "tidings", 0, 0, S(redis_prefix), 0,
     "prefix of every Tidings key in Redis"},
    {"owui-prefix", "TIDINGS_OWUI_PREFIX", "REDIS_KEY_PREFIX", 0, CFG_STR, "open-webui", 0, 0,
     S(owui_prefix), 0, "Open WebUI's key prefix, for its token revocation keys"},
    {"cors", "TIDINGS_CORS_ALLOW_ORIGIN", "CORS_ALLOW_ORIGIN", 0, CFG_STR, "", 0, 0, S(cors), 0,
     "allowed Origins, ';'-separated (scheme://host[:port]); empty: same origin only; '*': any"},
    {"namespaces", "TIDINGS_NAMESPACES", NULL, 0, CFG_STR, "", 0, 0, S(namespaces), 0,
     "Socket.IO namespaces besides \"/\", ';'-separated"},
    {"gateway-id", "TIDINGS_GATEWAY_ID", "HOSTNAME", 0, CFG_STR, "", 0, 0, S(gateway_id), 0,
     "this gateway's id in Redis (default: host name + pid)"},
    {"log-level", "TIDINGS_LOG_LEVEL", NULL, 0, CFG_STR, "info", 0, 0, S(log_level), 0,
     "debug, info, warn, error"},
    {"log-format", "TIDINGS_LOG_FORMAT", NULL, 0, CFG_STR, "json", 0, 0, S(log_format), 0,
     "json or text"},
    {"ping-interval-ms", "TIDINGS_PING_INTERVAL_MS", "WEBSOCKET_SERVER_PING_INTERVAL", 1000,
     CFG_INT, "25000", 50, DAY_MS, S(ping_interval_ms), 0,
     "Engine.IO ping interval (alias in seconds)"},
    {"ping-timeout-ms", "TIDINGS_PING_TIMEOUT_MS", "WEBSOCKET_SERVER_PING_TIMEOUT", 1000, CFG_INT,
     "20000", 50, DAY_MS, S(ping_timeout_ms), 0, "Engine.IO pong deadline (alias in seconds)"},
    {"connect-timeout-ms", "TIDINGS_CONNECT_TIMEOUT_MS", NULL, 0, CFG_INT, "45000", 50, DAY_MS,
     S(connect_timeout_ms), 0, "time allowed between the Engine.IO open and a Socket.IO CONNECT"},
    {"call-timeout-ms", "TIDINGS_CALL_TIMEOUT_MS", "WEBSOCKET_EVENT_CALLER_TIMEOUT", 1000, CFG_INT,
     "300000", 1, 86400000, S(call_timeout_ms), 0,
     "default wait for a client's answer to /api/v1/call (alias in seconds)"},
    {"max-payload", "TIDINGS_MAX_PAYLOAD", NULL, 0, CFG_INT, "1000000", 1024, 1LL << 30,
     S(max_payload), 0, "largest message or polling body accepted, bytes"},
    {"max-attachments", "TIDINGS_MAX_ATTACHMENTS", NULL, 0, CFG_INT, "10", 0, 16,
     S(max_attachments), 0, "binary attachments per Socket.IO packet"},
    {"max-fragments", "TIDINGS_MAX_FRAGMENTS", NULL, 0, CFG_INT, "1024", 1, 1 << 20,
     S(max_fragments), 0, "WebSocket fragments per message"},
    {"header-timeout-ms", "TIDINGS_HEADER_TIMEOUT_MS", NULL, 0, CFG_INT, "10000", 10, DAY_MS,
     S(header_timeout_ms), 0, "deadline for a whole HTTP request head"},
    {"max-header-bytes", "TIDINGS_MAX_HEADER_BYTES", NULL, 0, CFG_INT, "8192", 512, 1 << 20,
     S(max_header_bytes), 0, "largest HTTP request head"},
    {"max-headers", "TIDINGS_MAX_HEADERS", NULL, 0, CFG_INT, "64", 4, 64, S(max_headers), 0,
     "most HTTP header lines"},
    {"max-output", "TIDINGS_MAX_OUTPUT", NULL, 0, CFG_INT, "8388608", 65536, 1LL << 32,
     S(max_output), 0, "pending output per connection before it is dropped as a slow consumer"},
    {"coalesce-us", "TIDINGS_COALESCE_US", NULL, 0, CFG_INT, "2000", 0, 100000, S(coalesce_us), 0,
     "after writing to many sockets at once, wait this long before the next writes so that "
     "frames coalesce (0: never wait)"},
    {"max-conns-per-ip", "TIDINGS_MAX_CONNS_PER_IP", NULL, 0, CFG_INT, "0", 0, 1 << 30,
     S(max_conns_per_ip), 0, "open connections per client address (0: unlimited)"},
    {"max-conns-per-user", "TIDINGS_MAX_CONNS_PER_USER", NULL, 0, CFG_INT, "0", 0, 1 << 20,
     S(max_conns_per_user), 0,
     "authenticated connections per user across the cluster (0: unlimited)"},
    {"max-connect-rate", "TIDINGS_MAX_CONNECT_RATE", NULL, 0, CFG_INT, "0", 0, 1 << 30,
     S(max_connect_rate), 0,
     "new connections per second per process before 503 (reconnect storms; 0: unlimited)"},
    {"shards", "TIDINGS_SHARDS", NULL, 0, CFG_INT, "16", 1, 4096, S(shards), 0,
     "ingress stream shards (fixed per deployment)"},
    {"processes", "TIDINGS_PROCESSES", NULL, 0, CFG_INT, "1", 1, 256, S(processes), 0,
     "gateway processes sharing the port (SO_REUSEPORT) under a supervisor"},
    {"require-exp", "TIDINGS_JWT_REQUIRE_EXP", NULL, 0, CFG_BOOL, "1", 0, 1, S(require_exp), 0,
     "refuse JWTs without exp"},
    {"conformance", "TIDINGS_CONFORMANCE", NULL, 0, CFG_BOOL, "0", 0, 1, S(conformance), 0,
     "echo endpoints and namespaces for public conformance suites (never in production)"},
    {"trust-proxy", "TIDINGS_TRUST_PROXY", NULL, 0, CFG_BOOL, "0", 0, 1, S(trust_proxy), 0,
     "take the client address from X-Forwarded-For (only behind a trusted proxy)"},
    CONFIG_END,
};

static void warn_cb(const char *msg)
{
	log_warn("config: %s", msg);
}

int settings_load(settings *s, int argc, char **argv, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	int rc = config_load(settings_table, s, argc, argv, err, errlen, warn_cb);
	if (rc != 0)
		return rc;
	if (log_settings_check(s->log_level, s->log_format, err, errlen) < 0)
		return -1;
	/* The Socket.IO path is matched with and without its trailing slash. */
	size_t pl = strlen(s->path);
	if (pl == 0 || s->path[0] != '/') {
		snprintf(err, errlen, "path: must start with '/'");
		return -1;
	}
	if (pl > 1 && s->path[pl - 1] == '/')
		s->path[pl - 1] = '\0';
	if (!*s->gateway_id) {
		char host[64] = "gw";
		gethostname(host, sizeof(host) - 1);
		char id[128];
		snprintf(id, sizeof(id), "%s-%d", host, (int)getpid());
		free(s->gateway_id);
		s->gateway_id = strdup(id);
	}
	return 0;
}
