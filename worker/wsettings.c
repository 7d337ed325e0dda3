#include "wsettings.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define S(f) offsetof(wsettings, f)

const config_opt wsettings_table[] = {
    {"database-url", "TIDINGS_DATABASE_URL", "DATABASE_URL", 0, CFG_STR, "", 0, 0, S(database_url),
     CFG_SECRET, "PostgreSQL (URI or key=value conninfo)"},
    {"redis-url", "TIDINGS_REDIS_URL", "WEBSOCKET_REDIS_URL,REDIS_URL", 0, CFG_STR,
     "redis://127.0.0.1:6379/0", 0, 0, S(redis_url), 0, "Redis server"},
    {"redis-prefix", "TIDINGS_REDIS_PREFIX", NULL, 0, CFG_STR, "tidings", 0, 0, S(redis_prefix), 0,
     "prefix of every Tidings key in Redis"},
    {"worker-id", "TIDINGS_WORKER_ID", "HOSTNAME", 0, CFG_STR, "", 0, 0, S(worker_id), 0,
     "this worker's consumer name (default: host name + pid)"},
    {"admin-listen", "TIDINGS_WORKER_ADMIN_LISTEN", NULL, 0, CFG_STR, "127.0.0.1:8092", 0, 0,
     S(admin_listen), CFG_EMPTY, "internal address: /healthz, /readyz, /metrics (empty: off)"},
    {"log-level", "TIDINGS_LOG_LEVEL", NULL, 0, CFG_STR, "info", 0, 0, S(log_level), 0,
     "debug, info, warn, error"},
    {"log-format", "TIDINGS_LOG_FORMAT", NULL, 0, CFG_STR, "json", 0, 0, S(log_format), 0,
     "json or text"},
    {"shards", "TIDINGS_SHARDS", NULL, 0, CFG_INT, "16", 1, 4096, S(shards), 0,
     "ingress stream shards (fixed per deployment; same as the gateways')"},
    {"lease-ms", "TIDINGS_LEASE_MS", NULL, 0, CFG_INT, "10000", 500, 600000, S(lease_ms), 0,
     "shard lease: a dead worker's shards are taken over within this"},
    {"batch", "TIDINGS_BATCH", NULL, 0, CFG_INT, "1024", 1, 10000, S(batch), 0,
     "most entries per shard in one batch, read in XREADGROUPs of up to 128 per shard (a "
     "batch grows to what arrived while the last one was applied, so under load it merges "
     "more updates per statement)"},
    {"block-ms", "TIDINGS_BLOCK_MS", NULL, 0, CFG_INT, "1000", 10, 60000, S(block_ms), 0,
     "XREADGROUP BLOCK time"},
    {"heartbeat-coalesce-ms", "TIDINGS_HEARTBEAT_COALESCE_MS", NULL, 0, CFG_INT, "10000", 0,
     86400000, S(heartbeat_coalesce_ms), 0,
     "at most one user.last_active_at write per user per this (heartbeat storms)"},
    {"read-coalesce-ms", "TIDINGS_READ_COALESCE_MS", NULL, 0, CFG_INT, "1000", 0, 86400000,
     S(read_coalesce_ms), 0, "at most one last_read_at write per (user, channel or chat) per this"},
    {"authz-ttl-ms", "TIDINGS_AUTHZ_TTL_MS", NULL, 0, CFG_INT, "1000", 0, 60000, S(authz_ttl_ms), 0,
     "how long a typing authorisation is reused (0: ask the database every time)"},
    {"ydoc-compact-at", "TIDINGS_YDOC_COMPACT_AT", NULL, 0, CFG_INT, "200", 2, 1000000,
     S(ydoc_compact_at), 0,
     "a collaborative document's update log is merged into one update past this many entries"},
    {"toast-compression", "TIDINGS_TOAST_COMPRESSION", NULL, 0, CFG_STR, "lz4", 0, 0,
     S(toast_compression), CFG_EMPTY,
     "compression of the chats the worker rewrites (lz4 or pglz; empty: the server's "
     "default_toast_compression)"},
    {"channels-default", "TIDINGS_FEATURES_CHANNELS", "USER_PERMISSIONS_FEATURES_CHANNELS", 0,
     CFG_BOOL, "1", 0, 1, S(channels_default), 0,
     "users without a group permission may use channels (Open WebUI's env default)"},
    CONFIG_END,
};

static void warn_cb(const char *msg)
{
	log_warn("config: %s", msg);
}

int wsettings_load(wsettings *s, int argc, char **argv, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	int rc = config_load(wsettings_table, s, argc, argv, err, errlen, warn_cb);
	if (rc != 0)
		return rc;
	if (log_settings_check(s->log_level, s->log_format, err, errlen) < 0)
		return -1;
	if (*s->toast_compression && strcmp(s->toast_compression, "lz4") != 0 &&
	    strcmp(s->toast_compression, "pglz") != 0) {
		snprintf(err, errlen, "toast-compression: '%s' is not lz4, pglz or empty",
		         s->toast_compression);
		return -1;
	}
	if (!*s->worker_id) {
		char host[64] = "worker";
		gethostname(host, sizeof(host) - 1);
		char id[128];
		snprintf(id, sizeof(id), "%s-%d", host, (int)getpid());
		free(s->worker_id);
		s->worker_id = strdup(id);
	}
	return 0;
}
