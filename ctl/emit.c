#include "ctl/emit.h"

#include <cJSON.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ident.h"
#include "common/rand.h"
#include "common/redis.h"
#include "common/shard.h"

static int usage(void)
{
	fprintf(stderr,
	        "usage: tidingsctl emit (--user ID | --room NAME | --sid SID) [--event events]\n"
	        "                       [--data JSON] [--update-db] [--id IDEMPOTENCY_KEY]\n"
	        "Reads REDIS_URL (or TIDINGS_REDIS_URL), TIDINGS_REDIS_PREFIX, TIDINGS_SHARDS.\n");
	return 2;
}

static const char *env_or(const char *a, const char *b, const char *dflt)
{
	const char *v = getenv(a);
	if (v && *v)
		return v;
	v = b ? getenv(b) : NULL;
	return v && *v ? v : dflt;
}

int ctl_emit(int argc, char **argv)
{
	const char *to_type = NULL, *to = NULL, *event = "events", *data = "null", *id = NULL;
	int update_db = 0;
	for (int i = 1; i < argc && argv[i]; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if ((!strcmp(a, "--user") || !strcmp(a, "--room") || !strcmp(a, "--sid")) && v) {
			if (to_type)
				return usage();
			to_type = a + 2;
			to = v;
			i++;
		} else if (!strcmp(a, "--event") && v) {
			event = v, i++;
		} else if (!strcmp(a, "--data") && v) {
			data = v, i++;
		} else if (!strcmp(a, "--id") && v) {
			id = v, i++;
		} else if (!strcmp(a, "--update-db")) {
			update_db = 1;
		} else {
			return usage();
		}
	}
	if (!to_type || !ident_valid(to, 200) || !*event || (id && !ident_valid(id, 200)))
		return usage();
	cJSON *d = cJSON_Parse(data);
	if (!d) {
		fprintf(stderr, "tidingsctl emit: --data is not JSON\n");
		return 2;
	}
	char *compact = cJSON_PrintUnformatted(d);
	char key[300], stream[400], eid[64];
	const cJSON *chat = cJSON_GetObjectItemCaseSensitive(d, "chat_id");
	if (cJSON_IsString(chat) && ident_valid(chat->valuestring, 200))
		snprintf(key, sizeof(key), "chat:%s", chat->valuestring);
	else
		snprintf(key, sizeof(key), "%s:%s", to_type, to);
	const char *prefix = env_or("TIDINGS_REDIS_PREFIX", NULL, "tidings");
	int shards = atoi(env_or("TIDINGS_SHARDS", NULL, "16"));
	snprintf(stream, sizeof(stream), "%s:ingress:%u", prefix,
	         shard_of(slice_cstr(key), shards > 0 ? (uint32_t)shards : 16));
	if (!id) {
		char rnd[23];
		rand_id(rnd, 22);
		snprintf(eid, sizeof(eid), "emit-%s", rnd);
		id = eid;
	}
	const char *url = env_or("TIDINGS_REDIS_URL", "REDIS_URL", "redis://127.0.0.1:6379/0");
	char host[256], user[128], pw[256];
	int port, db;
	if (redis_parse_url(url, host, sizeof(host), &port, &db, user, sizeof(user), pw,
	                    sizeof(pw)) < 0) {
		fprintf(stderr, "tidingsctl emit: bad Redis URL\n");
		return 2;
	}
	struct timeval tv = {5, 0};
	redisContext *rc = redisConnectWithTimeout(host, port, tv);
	int ok = rc && !rc->err;
	redisReply *r = NULL;
	if (ok && *pw)
		r = *user ? redisCommand(rc, "AUTH %s %s", user, pw)
		          : redisCommand(rc, "AUTH %s", pw),
		freeReplyObject(r);
	if (ok && db)
		r = redisCommand(rc, "SELECT %d", db), freeReplyObject(r);
	if (ok) {
		const char *av[] = {"XADD",
		                    stream,
		                    "*",
		                    "v",
		                    "1",
		                    "id",
		                    id,
		                    "kind",
		                    "emit",
		                    "event",
		                    event,
		                    "to_type",
		                    to_type,
		                    "to",
		                    to,
		                    "data",
		                    compact,
		                    "update_db",
		                    update_db ? "1" : "0"};
		r = redisCommandArgv(rc, 19, av, NULL);
		ok = r && r->type == REDIS_REPLY_STRING;
		if (!ok)
			fprintf(stderr, "tidingsctl emit: %s\n",
			        r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
		freeReplyObject(r);
	} else {
		fprintf(stderr, "tidingsctl emit: cannot reach Redis at %s:%d\n", host, port);
	}
	if (rc)
		redisFree(rc);
	if (ok)
		printf("{\"id\":\"%s\",\"stream\":\"%s\"}\n", id, stream);
	free(compact);
	cJSON_Delete(d);
	return ok ? 0 : 1;
}
