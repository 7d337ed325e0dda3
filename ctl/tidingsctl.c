/*
 * tidingsctl - the operator's and producer's command line.
 *
 *   tidingsctl token --user ID [--exp SECONDS] [--no-exp]
 *       mints a development JWT signed with WEBUI_SECRET_KEY, with the
 *       claims Open WebUI puts in its own (id, exp, jti, iat).
 *   tidingsctl checkconfig [gateway options...]
 *       prints the gateway's effective configuration (secrets masked) and
 *       exits non-zero when it is invalid.
 *   tidingsctl migrate [--status]
 *       applies the numbered migrations of sql/ (embedded at build time) to
 *       DATABASE_URL, each once, under an advisory lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/ident.h"
#include "common/jwt.h"
#include "common/rand.h"
#include "ctl/call.h"
#include "ctl/emit.h"
#include "ctl/migrate.h"
#include "gateway/settings.h"

static int usage(FILE *out)
{
	static const char text[] =
	    "usage: tidingsctl token --user ID [--exp SECONDS | --no-exp]\n"
	    "       tidingsctl checkconfig [--option=value ...]\n"
	    "       tidingsctl migrate [--status]\n"
	    "       tidingsctl emit (--user ID | --room R | --sid S) [--event E] [--data JSON]\n"
	    "                       [--update-db] [--id KEY]\n"
	    "       tidingsctl call --sid S [--event E] [--data JSON] [--timeout-ms N]\n"
	    "\n"
	    "token        mint a JWT signed with WEBUI_SECRET_KEY (claims id, exp, jti, iat);\n"
	    "             --exp defaults to 4 weeks, as Open WebUI's JWT_EXPIRES_IN\n"
	    "checkconfig  print the gateway's effective configuration, secrets masked\n"
	    "migrate      apply the PostgreSQL migrations to DATABASE_URL (--status: list them)\n"
	    "emit         put an event for a user, room or socket on the ingress stream\n"
	    "call         deliver an event with an ack to one socket, print the client's answer\n";
	fputs(text, out);
	return out == stdout ? 0 : 2;
}

/* A version-4 UUID, as Open WebUI's jti. */
static void uuid4(char out[37])
{
	unsigned char b[16];
	rand_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
	         b[13], b[14], b[15]);
}

static int cmd_token(int argc, char **argv)
{
	const char *user = NULL;
	long long exp = 4LL * 7 * 86400;
	int no_exp = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else if (strncmp(argv[i], "--user=", 7) == 0)
			user = argv[i] + 7;
		else if (strcmp(argv[i], "--exp") == 0 && i + 1 < argc)
			exp = atoll(argv[++i]);
		else if (strncmp(argv[i], "--exp=", 6) == 0)
			exp = atoll(argv[i] + 6);
		else if (strcmp(argv[i], "--no-exp") == 0)
			no_exp = 1;
		else
			return usage(stderr);
	}
	if (!user || !ident_valid(user, JWT_MAX_ID)) {
		fprintf(stderr,
		        "tidingsctl token: --user must be 1-%d characters of "
		        "[A-Za-z0-9._:@-]\n",
		        JWT_MAX_ID);
		return 2;
	}
	settings s;
	char err[512];
	char *args[] = {"tidingsctl"};
	if (settings_load(&s, 1, args, err, sizeof(err)) < 0) {
		fprintf(stderr, "tidingsctl: %s\n", err);
		return 2;
	}
	if (!*s.secret) {
		fprintf(stderr,
		        "tidingsctl token: WEBUI_SECRET_KEY (or TIDINGS_SECRET) is not set\n");
		return 2;
	}
	char jti[37], payload[512];
	uuid4(jti);
	long long now = (long long)time(NULL);
	if (no_exp)
		snprintf(payload, sizeof(payload), "{\"id\":\"%s\",\"jti\":\"%s\",\"iat\":%lld}",
		         user, jti, now);
	else
		snprintf(payload, sizeof(payload),
		         "{\"id\":\"%s\",\"exp\":%lld,\"jti\":\"%s\",\"iat\":%lld}", user,
		         now + exp, jti, now);
	buf out;
	buf_init(&out, 0);
	if (jwt_sign_hs256(&out, slice_cstr(payload), s.secret, strlen(s.secret)) < 0) {
		fprintf(stderr, "tidingsctl token: signing failed\n");
		return 1;
	}
	printf("%.*s\n", (int)out.len, out.data);
	buf_dispose(&out);
	return 0;
}

static int cmd_checkconfig(int argc, char **argv)
{
	settings s;
	char err[512];
	int rc = settings_load(&s, argc, argv, err, sizeof(err));
	if (rc == 1) {
		config_help(settings_table, "usage: tidingsctl checkconfig [--option=value ...]",
		            stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "invalid configuration: %s\n", err);
		return 2;
	}
	config_dump(settings_table, &s, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (strcmp(argv[1], "token") == 0)
		return cmd_token(argc - 2, argv + 2);
	if (strcmp(argv[1], "checkconfig") == 0)
		return cmd_checkconfig(argc - 1, argv + 1);
	if (strcmp(argv[1], "migrate") == 0)
		return ctl_migrate(argc - 1, argv + 1);
	if (strcmp(argv[1], "emit") == 0)
		return ctl_emit(argc - 1, argv + 1);
	if (strcmp(argv[1], "call") == 0)
		return ctl_call(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)
		return usage(stdout);
	fprintf(stderr, "tidingsctl: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
