/*
 * migrate.c - `tidingsctl migrate` (see migrate.h).
 *
 * A short-lived command, so plain synchronous libpq is right here; the
 * long-running processes use common/pg.h instead. Every migration is
 * checked before any is applied: a database whose history disagrees with
 * this binary is reported and left alone rather than half-migrated.
 */
#include "ctl/migrate.h"

#include "common/pg.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "common/clock.h"
#include "common/config.h"

typedef struct migration {
	int version;      /* NNNN of sql/NNNN_name.sql */
	const char *name; /* the name part */
	const char *sql;  /* the file's exact bytes */
} migration;

/*
 * The table is generated from sql/ at build time (scripts/embed-sql). A
 * tree whose build does not generate it still compiles, so the rest of
 * tidingsctl is not held hostage by this command, but such a binary
 * refuses to migrate.
 */
#if defined(__has_include)
#if __has_include("build/gen/migrations.inc")
#include "build/gen/migrations.inc"
#define MIGRATIONS_EMBEDDED 1
#endif
#endif
#ifdef MIGRATIONS_EMBEDDED
static const size_t n_migrations = sizeof(migrations) / sizeof(migrations[0]);
#else
static const migration migrations[1];
static const size_t n_migrations = 0;
#endif

/*
 * Key of the session advisory lock held while migrating: the bytes
 * "tidings!" read as a big-endian integer. It must never change, so that
 * migrators of different releases still exclude each other.
 */
#define MIGRATE_LOCK_KEY "8388346184940876577"

/*
 * How long one migration may wait for a table lock. Creating a foreign key
 * locks the referenced table (chat, "group"), which on a live Open WebUI
 * database a long transaction may hold; waiting longer would queue Open
 * WebUI's own writes behind ours. Failing instead lets the operator retry.
 */
#define MIGRATE_LOCK_TIMEOUT "10s"

#define SHA256_HEX_LEN 64

typedef struct migrate_opts {
	char *database_url;
} migrate_opts;

static const config_opt migrate_table[] = {
    {"database-url", "TIDINGS_DATABASE_URL", "DATABASE_URL", 0, CFG_STR, "", 0, 0,
     offsetof(migrate_opts, database_url), CFG_SECRET,
     "PostgreSQL to migrate: a libpq URI or key=value conninfo (Open WebUI's "
     "postgresql+driver://... spelling is accepted)"},
    CONFIG_END,
};

static const char usage_text[] =
    "usage: tidingsctl migrate [--status] [--database-url=URL]\n"
    "\n"
    "Applies the migrations built into tidingsctl (sql/NNNN_name.sql) that the\n"
    "database has not recorded in tidings_schema_migrations, each in its own\n"
    "transaction, in order. Running it again applies nothing. Open WebUI's tables\n"
    "are created only when missing and never altered. --status lists every\n"
    "migration as applied or pending and changes nothing.\n"
    "\n"
    "Exit status: 0 done (or nothing to do), 1 database unreachable or a migration\n"
    "failed (rolled back), 2 usage error, or refused: an applied migration changed,\n"
    "or the database was migrated by a newer tidingsctl.";

/* Prints a libpq message without its trailing newline, after a prefix. */
static void report(const char *what, const char *msg)
{
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	fprintf(stderr, "tidingsctl migrate: %s: %.*s\n", what, (int)n, msg);
}

/* DATABASE_URL as libpq takes it (see pg_url_normalize). Returns a heap
 * string, or NULL with a message printed. */
static char *conninfo_from_url(const char *url)
{
	char *s = strdup(url);
	if (!s) {
		fprintf(stderr, "tidingsctl migrate: out of memory\n");
		return NULL;
	}
	if (pg_url_normalize(s) < 0) {
		fprintf(stderr, "tidingsctl migrate: DATABASE_URL names a SQLite database; "
		                "Tidings needs PostgreSQL\n");
		free(s);
		return NULL;
	}
	return s;
}

/*
 * Connects. Our connect_timeout and application_name come before the URL
 * in the list, so values the URL sets itself win.
 */
static PGconn *connect_db(const char *conninfo)
{
	const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
	const char *const vals[] = {"10", "tidingsctl migrate", conninfo, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c) {
		fprintf(stderr, "tidingsctl migrate: out of memory\n");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		report("cannot connect", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Runs a statement without parameters; 0, or -1 with the error printed. */
static int exec_ok(PGconn *c, const char *sql, const char *what)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		report(what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

/* Lowercase hex SHA-256 of a migration's text, as `sha256sum` prints it. */
static void sha256_hex(const char *s, char out[SHA256_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
		/* Only a broken libcrypto gets here; a checksum nobody can
		 * match makes the run fail safe instead of recording garbage. */
		memset(out, '!', SHA256_HEX_LEN);
	} else {
		static const char hex[] = "0123456789abcdef";
		for (size_t i = 0; i < len; i++) {
			out[2 * i] = hex[md[i] >> 4];
			out[2 * i + 1] = hex[md[i] & 15];
		}
	}
	out[SHA256_HEX_LEN] = '\0';
}

/*
 * Takes the migration lock for the rest of the session; the server drops it
 * when the connection ends, also when we exit on an error. A migrator that
 * finds it taken says so and waits: the other one may be applying a long
 * migration, and afterwards there is nothing left for us to do.
 */
static int take_lock(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT pg_try_advisory_lock(" MIGRATE_LOCK_KEY ")");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		report("cannot take the migration lock", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	int got = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (got)
		return 0;
	fprintf(stderr, "tidingsctl migrate: another migrator holds the migration lock; waiting\n");
	return exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")",
	               "cannot take the migration lock");
}

/*
 * What the database has applied: rows (version, checksum, applied_at) in
 * version order, empty before migration 0001 created the table. NULL with
 * the error printed when the queries fail.
 */
static PGresult *load_applied(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT to_regclass('tidings_schema_migrations') IS NOT NULL");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		report("cannot read the applied migrations", PQresultErrorMessage(r));
		PQclear(r);
		return NULL;
	}
	int exists = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (!exists)
		return PQmakeEmptyPGresult(c, PGRES_TUPLES_OK);
	r = PQexec(c, "SELECT version, checksum, "
	              "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' "
	              "FROM tidings_schema_migrations ORDER BY version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		report("cannot read the applied migrations", PQresultErrorMessage(r));
		PQclear(r);
		return NULL;
	}
	return r;
}

static int applied_row(const PGresult *applied, int version)
{
	for (int i = 0; i < PQntuples(applied); i++)
		if (atoi(PQgetvalue(applied, i, 0)) == version)
			return i;
	return -1;
}

static const migration *embedded(int version)
{
	for (size_t i = 0; i < n_migrations; i++)
		if (migrations[i].version == version)
			return &migrations[i];
	return NULL;
}

/*
 * Checks the recorded history against this binary. Prints one line per
 * problem (or, with `quiet` unset, per migration as well) and returns the
 * number of problems.
 */
static int check_history(const PGresult *applied, int quiet)
{
	int problems = 0;
	char sum[SHA256_HEX_LEN + 1];
	for (size_t i = 0; i < n_migrations; i++) {
		const migration *m = &migrations[i];
		int row = applied_row(applied, m->version);
		if (row < 0) {
			if (!quiet)
				printf("%04d_%-32s pending\n", m->version, m->name);
			continue;
		}
		sha256_hex(m->sql, sum);
		const char *recorded = PQgetvalue(applied, row, 1);
		if (strcmp(sum, recorded) == 0) {
			if (!quiet)
				printf("%04d_%-32s applied %s\n", m->version, m->name,
				       PQgetvalue(applied, row, 2));
			continue;
		}
		problems++;
		if (!quiet)
			printf("%04d_%-32s CHANGED since it was applied %s\n", m->version, m->name,
			       PQgetvalue(applied, row, 2));
		fprintf(stderr,
		        "tidingsctl migrate: migration %04d_%s was applied with checksum %s, but "
		        "the copy in this tidingsctl has %s. Applied migrations must never change; "
		        "put the change in a new migration.\n",
		        m->version, m->name, recorded, sum);
	}
	for (int i = 0; i < PQntuples(applied); i++) {
		int v = atoi(PQgetvalue(applied, i, 0));
		if (embedded(v))
			continue;
		problems++;
		if (!quiet)
			printf("%04d_%-32s unknown to this tidingsctl\n", v, "?");
		fprintf(
		    stderr,
		    "tidingsctl migrate: the database has migration %04d, which this tidingsctl "
		    "does not know: a newer release migrated it; use that release.\n",
		    v);
	}
	return problems;
}

/* Records an applied migration; 0, or -1 with the error printed. */
static int record(PGconn *c, const migration *m, const char *what)
{
	char version[16], sum[SHA256_HEX_LEN + 1];
	snprintf(version, sizeof(version), "%d", m->version);
	sha256_hex(m->sql, sum);
	const char *const params[] = {version, m->name, sum};
	PGresult *r =
	    PQexecParams(c,
	                 "INSERT INTO tidings_schema_migrations (version, name, checksum) "
	                 "VALUES ($1, $2, $3)",
	                 3, NULL, params, NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		report(what, PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

/*
 * Applies one migration and records it in one transaction: both happen or
 * neither does. The file runs as one multi-statement script; it holds no
 * values from outside, and the record is written with parameters.
 */
static int apply(PGconn *c, const migration *m)
{
	char what[128];
	snprintf(what, sizeof(what), "%04d_%s failed", m->version, m->name);
	if (exec_ok(c, "BEGIN", what) < 0)
		return -1;
	if (exec_ok(c, "SET LOCAL lock_timeout = '" MIGRATE_LOCK_TIMEOUT "'", what) < 0 ||
	    exec_ok(c, m->sql, what) < 0 || record(c, m, what) < 0) {
		PQclear(PQexec(c, "ROLLBACK"));
		return -1;
	}
	/* A failed COMMIT has already ended the transaction: nothing to undo. */
	return exec_ok(c, "COMMIT", what);
}

static int apply_pending(PGconn *c, const PGresult *applied)
{
	int n = 0;
	for (size_t i = 0; i < n_migrations; i++) {
		const migration *m = &migrations[i];
		if (applied_row(applied, m->version) >= 0)
			continue;
		uint64_t t0 = clock_mono_ms();
		if (apply(c, m) < 0)
			return 1;
		printf("applied %04d_%s (%llu ms)\n", m->version, m->name,
		       (unsigned long long)(clock_mono_ms() - t0));
		fflush(stdout);
		n++;
	}
	if (n == 0)
		printf("nothing to apply: all %zu migrations were applied before\n", n_migrations);
	else
		printf("applied %d migration%s; all %zu are applied now\n", n, n == 1 ? "" : "s",
		       n_migrations);
	return 0;
}

/* Removes "--status" from the arguments (config_load would refuse it). */
static int take_status_flag(int *argc, char **argv)
{
	int found = 0, out = 1;
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--status") == 0)
			found = 1;
		else
			argv[out++] = argv[i];
	}
	*argc = out;
	return found;
}

static int run(PGconn *c, int status_only)
{
	if (take_lock(c) < 0)
		return 1;
	PGresult *applied = load_applied(c);
	if (!applied)
		return 1;
	int rc;
	if (status_only)
		rc = check_history(applied, 0) ? 2 : 0;
	else if (check_history(applied, 1))
		rc = 2;
	else
		rc = apply_pending(c, applied);
	PQclear(applied);
	return rc;
}

int ctl_migrate(int argc, char **argv)
{
	int status_only = take_status_flag(&argc, argv);
	migrate_opts o = {0};
	char err[512];
	int rc = config_load(migrate_table, &o, argc, argv, err, sizeof(err), NULL);
	if (rc == 1) {
		config_help(migrate_table, usage_text, stdout);
		free(o.database_url);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "tidingsctl migrate: %s\n", err);
		free(o.database_url);
		return 2;
	}
	if (!o.database_url || !*o.database_url) {
		fprintf(stderr, "tidingsctl migrate: DATABASE_URL (or TIDINGS_DATABASE_URL, or "
		                "--database-url) is not set\n");
		free(o.database_url);
		return 2;
	}
	if (n_migrations == 0) {
		fprintf(stderr, "tidingsctl migrate: this tidingsctl was built without its "
		                "migrations (build/gen/migrations.inc was missing); rebuild it "
		                "with make\n");
		free(o.database_url);
		return 1;
	}
	char *conninfo = conninfo_from_url(o.database_url);
	free(o.database_url);
	if (!conninfo)
		return 2;
	PGconn *c = connect_db(conninfo);
	free(conninfo);
	if (!c)
		return 1;
	printf("database %s on %s:%s\n", PQdb(c), PQhost(c), PQport(c));
	fflush(stdout);
	rc = run(c, status_only);
	PQfinish(c);
	return rc;
}
