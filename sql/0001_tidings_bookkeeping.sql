-- 0001: Tidings' own bookkeeping tables.
--
-- These tables belong to Tidings, so they are created and commented
-- unconditionally. tidingsctl migrate reads tidings_schema_migrations before
-- this file has run (it checks that the table exists first), so its shape is
-- part of the migrator's contract: never change it in place.

CREATE TABLE IF NOT EXISTS tidings_schema_migrations (
	version integer PRIMARY KEY,
	name text NOT NULL,
	checksum text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE tidings_schema_migrations IS
	'Tidings migrations applied to this database by tidingsctl migrate, one row per sql/NNNN_name.sql file. '
	'Written in the same transaction as the migration itself.';
COMMENT ON COLUMN tidings_schema_migrations.version IS
	'Migration number: the NNNN prefix of sql/NNNN_name.sql. Applied in increasing order.';
COMMENT ON COLUMN tidings_schema_migrations.name IS
	'Migration name: the file name without the number prefix and the .sql suffix.';
COMMENT ON COLUMN tidings_schema_migrations.checksum IS
	'Lowercase hex SHA-256 of the migration file as applied. tidingsctl migrate refuses to run '
	'when a file it embeds no longer matches: applied migrations are immutable.';
COMMENT ON COLUMN tidings_schema_migrations.applied_at IS
	'Start of the transaction that applied the migration (server clock, now()).';

-- The idempotency record of the workers: delivery from Redis is at least
-- once, so a worker inserts the event id in the same transaction as the
-- event's effect; a redelivered event collides on the primary key and the
-- worker skips it. Rows are only needed for as long as an event can still be
-- redelivered, hence the index on applied_at for pruning old rows.
CREATE TABLE IF NOT EXISTS tidings_event (
	id text PRIMARY KEY,
	kind text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS tidings_event_applied_at_idx ON tidings_event (applied_at);

COMMENT ON TABLE tidings_event IS
	'Events whose database effect has been applied, for exactly-once effects over at-least-once '
	'delivery: the id is inserted in the same transaction as the effect, so a redelivered event '
	'finds its row and does nothing. Old rows may be deleted once their events cannot be redelivered.';
COMMENT ON COLUMN tidings_event.id IS
	'Stable event id from the ingress stream entry (field id), e.g. {gateway}-{boot ms}-{seq} for client events.';
COMMENT ON COLUMN tidings_event.kind IS
	'What the event was, for operators: the ingress entry''s kind, with the event name when it has one.';
COMMENT ON COLUMN tidings_event.applied_at IS
	'Start of the transaction that applied the event (server clock, now()); used to prune old rows.';
