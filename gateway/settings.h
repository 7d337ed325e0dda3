/*
 * settings.h - the gateway's configuration table and parsed values.
 *
 * Times are kept in milliseconds. Open WebUI's variables are accepted as
 * aliases in their own units (seconds for the ping settings), so an
 * existing deployment needs no new settings.
 */
#ifndef TIDINGS_SETTINGS_H
#define TIDINGS_SETTINGS_H

#include <stdint.h>

#include "common/config.h"

typedef struct settings {
	char *listen;       /* public host:port */
	char *admin_listen; /* internal host:port: health, metrics, emit API */
	char *path;         /* Socket.IO path, "/ws/socket.io" */
	char *secret;       /* WEBUI_SECRET_KEY */
	char *redis_url;
	char *redis_prefix; /* our keys */
	char *owui_prefix;  /* Open WebUI's REDIS_KEY_PREFIX: token revocation keys */
	char *cors;         /* ';'-separated origins, "*" allowed when explicit */
	char *namespaces;   /* extra Socket.IO namespaces besides "/", ';'-separated */
	char *gateway_id;
	char *api_key; /* bearer token of the emit API; empty: API off */
	char *log_level, *log_format;
	int64_t ping_interval_ms, ping_timeout_ms, connect_timeout_ms, call_timeout_ms;
	int64_t max_payload, max_attachments, max_fragments;
	int64_t header_timeout_ms, max_header_bytes, max_headers;
	int64_t max_output, max_conns_per_ip, max_conns_per_user, max_connect_rate, shards;
	int64_t processes, coalesce_us;
	int require_exp, conformance, trust_proxy;
} settings;

extern const config_opt settings_table[];

/* Loads settings for this process; returns as config_load. */
int settings_load(settings *s, int argc, char **argv, char *err, size_t errlen);

#endif
