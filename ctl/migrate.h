/*
 * migrate.h - `tidingsctl migrate`: brings a PostgreSQL database up to the
 * schema Tidings needs.
 *
 * The migrations are the files sql/NNNN_name.sql, compiled into the binary
 * (scripts/embed-sql generates build/gen/migrations.inc, which migrate.c
 * includes). Each is applied once, in version order, in its own
 * transaction, and recorded with the SHA-256 of its text in
 * tidings_schema_migrations. A session-level advisory lock serialises
 * concurrent migrators, so starting several replicas that all migrate is
 * safe. Applied migrations are immutable: when an embedded migration no
 * longer matches the checksum recorded for its version, or the database
 * records a version this binary does not know (it is newer), nothing is
 * applied and the command fails.
 *
 * The migrations create Open WebUI's tables only when they are missing, so
 * the command is safe against an existing Open WebUI database: its tables,
 * columns, rows and comments are left as they are (docs/schema.md).
 */
#ifndef TIDINGS_CTL_MIGRATE_H
#define TIDINGS_CTL_MIGRATE_H

/*
 * Runs `tidingsctl migrate`. argv[0] is the subcommand name ("migrate"),
 * the options follow it:
 *
 *   (none)     apply every pending migration, one line per migration
 *   --status   list every migration as applied or pending; change nothing
 *   --help     usage on stdout
 *
 * The database is the libpq connection string or URI in the environment
 * variable DATABASE_URL (Open WebUI's variable; its SQLAlchemy spelling
 * postgresql+psycopg://... is accepted). Progress goes to stdout, errors to
 * stderr. Returns the process exit status: 0 success (including nothing to
 * do), 1 the database could not be reached or a migration failed (that
 * migration is rolled back, earlier ones stay applied), 2 usage or
 * configuration error, or a refusal (changed checksum, unknown version).
 */
int ctl_migrate(int argc, char **argv);

#endif
