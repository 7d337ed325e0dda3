/*
 * wsettings.h - the worker's configuration table and parsed values.
 */
#ifndef TIDINGS_WSETTINGS_H
#define TIDINGS_WSETTINGS_H

#include <stdint.h>

#include "common/config.h"

typedef struct wsettings {
	char *database_url;
	char *redis_url;
	char *redis_prefix;
	char *worker_id;
	char *admin_listen; /* /healthz, /readyz, /metrics; empty: off */
	char *log_level, *log_format;
	int64_t shards;
	int64_t lease_ms;
	int64_t batch;
	int64_t block_ms;
	int64_t heartbeat_coalesce_ms;
	int64_t read_coalesce_ms;
	int64_t authz_ttl_ms;
	int64_t ydoc_compact_at; /* a document's update log is merged past this many entries */
	int channels_default;    /* USER_PERMISSIONS_FEATURES_CHANNELS */
	char *toast_compression; /* the session's default_toast_compression; "": the server's */
} wsettings;

extern const config_opt wsettings_table[];

int wsettings_load(wsettings *s, int argc, char **argv, char *err, size_t errlen);

#endif
