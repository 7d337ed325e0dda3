#!/usr/bin/env bash
# tidingsctl migrate against a private PostgreSQL: a fresh database gets
# every table of docs/schema.md with Open WebUI's column types and a comment
# on every table and column; a second run applies nothing; an existing Open
# WebUI database keeps its own columns, comments and rows; a changed or
# unknown migration is refused; a failing migration is rolled back whole;
# two migrators at once apply each migration once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
watchdog 120

CTL=${TIDINGS_CTL_BIN:-$TOP/build/tidingsctl}
[ -x "$CTL" ] || bail "tidingsctl is built" "make build/tidingsctl"
help=$("$CTL" migrate --help 2>&1)
[[ $help == *tidings_schema_migrations* ]] ||
	bail "tidingsctl supports migrate" "wire ctl/migrate.c into ctl/tidingsctl.c and the Makefile (or set TIDINGS_CTL_BIN)"
require_pg
start_pg || bail "a private postgres starts"

# migrate DB [ARGS...]: runs the migrator on database DB with nothing else
# in its environment; output (stdout and stderr) in $OUT, status in $RC.
migrate() {
	local db=$1
	shift
	OUT=$(env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 DATABASE_URL="$(pg_url "$db")" \
		timeout 30 "$CTL" migrate "$@" 2>&1)
	RC=$?
}

# same GOT WANT DESC: multi-line comparison that shows a diff.
same() {
	if [ "$1" = "$2" ]; then
		pass "$3"
	else
		fail "$3" "$(diff <(echo "$2") <(echo "$1") | sed 's/^</want:/; s/^>/got: /')"
	fi
}

FILES=("$TOP"/sql/[0-9][0-9][0-9][0-9]_*.sql)
N=${#FILES[@]}
OWUI_TABLES="'user','chat','chat_message','channel','channel_member','message','note','access_grant','group','group_member'"
ALL_TABLES="$OWUI_TABLES,'tidings_schema_migrations','tidings_event'"

out=$(env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 "$CTL" migrate 2>&1)
is "$?" 2 "without DATABASE_URL migrate exits 2"
like "$out" "DATABASE_URL .*is not set" "and says what is missing"

out=$(env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 DATABASE_URL=sqlite:///app/data/webui.db "$CTL" migrate 2>&1)
is "$?" 2 "a SQLite DATABASE_URL is refused"
like "$out" "needs PostgreSQL" "with the reason"

out=$(env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 DATABASE_URL="postgresql://postgres@127.0.0.1:$(free_port)/x" \
	timeout 30 "$CTL" migrate 2>&1)
is "$?" 1 "an unreachable database exits 1"
like "$out" "cannot connect" "and says so"

# ---------------------------------------------------------------- fresh database

pg_createdb fresh
migrate fresh
is "$RC" 0 "migrate on an empty database exits 0"
is "$(grep -cE '^applied [0-9]{4}_' <<<"$OUT")" "$N" "it applies all $N migrations, one line each"

missing=$(psql_q "SELECT t FROM unnest(ARRAY[$ALL_TABLES]) AS t WHERE to_regclass(quote_ident(t)) IS NULL" fresh)
is "$missing" "" "every table exists"

# The catalogue's types, transcribed independently of sql/ (Open WebUI's
# String -> varchar, Text -> text, JSON -> json, BigInteger -> bigint).
want_cols=$(
	cat <<'EOF'
access_grant.id text
access_grant.resource_type text
access_grant.resource_id text
access_grant.principal_type text
access_grant.principal_id text
access_grant.permission text
access_grant.created_at bigint
channel.id text
channel.user_id text
channel.type text
channel.name text
channel.description text
channel.is_private boolean
channel.data json
channel.meta json
channel.created_at bigint
channel.updated_at bigint
channel.updated_by text
channel.archived_at bigint
channel.archived_by text
channel.deleted_at bigint
channel.deleted_by text
channel_member.id text
channel_member.channel_id text
channel_member.user_id text
channel_member.role text
channel_member.status text
channel_member.is_active boolean
channel_member.is_channel_muted boolean
channel_member.is_channel_pinned boolean
channel_member.data json
channel_member.meta json
channel_member.invited_at bigint
channel_member.invited_by text
channel_member.joined_at bigint
channel_member.left_at bigint
channel_member.last_read_at bigint
channel_member.created_at bigint
channel_member.updated_at bigint
chat.id character varying
chat.user_id character varying
chat.title text
chat.chat json
chat.created_at bigint
chat.updated_at bigint
chat.share_id text
chat.archived boolean
chat.pinned boolean
chat.meta json
chat.variables json
chat.folder_id text
chat.tasks json
chat.summary text
chat.current_message_id text
chat.last_read_at bigint
chat_message.id text
chat_message.chat_id text
chat_message.user_id text
chat_message.role text
chat_message.parent_id text
chat_message.content json
chat_message.output json
chat_message.model_id text
chat_message.files json
chat_message.sources json
chat_message.embeds json
chat_message.meta json
chat_message.done boolean
chat_message.status_history json
chat_message.error json
chat_message.usage json
chat_message.context_summary text
chat_message.created_at bigint
chat_message.updated_at bigint
group.id text
group.user_id text
group.name text
group.description text
group.data json
group.meta json
group.permissions json
group.created_at bigint
group.updated_at bigint
group_member.id text
group_member.group_id text
group_member.user_id text
group_member.created_at bigint
group_member.updated_at bigint
message.id text
message.user_id text
message.channel_id text
message.reply_to_id text
message.parent_id text
message.is_pinned boolean
message.pinned_at bigint
message.pinned_by text
message.content text
message.data json
message.meta json
message.created_at bigint
message.updated_at bigint
note.id text
note.user_id text
note.title text
note.data json
note.meta json
note.created_at bigint
note.updated_at bigint
tidings_event.id text
tidings_event.kind text
tidings_event.applied_at timestamp with time zone
tidings_schema_migrations.version integer
tidings_schema_migrations.name text
tidings_schema_migrations.checksum text
tidings_schema_migrations.applied_at timestamp with time zone
user.id character varying
user.email character varying
user.username character varying(50)
user.role character varying
user.name character varying
user.profile_image_url text
user.profile_banner_image_url text
user.bio text
user.gender text
user.date_of_birth date
user.timezone character varying
user.presence_state character varying
user.status_emoji character varying
user.status_message text
user.status_expires_at bigint
user.info json
user.variables json
user.settings json
user.oauth json
user.scim json
user.last_active_at bigint
user.updated_at bigint
user.created_at bigint
EOF
)
got_cols=$(psql_q "SELECT table_name || '.' || column_name || ' ' || data_type
	|| coalesce('(' || character_maximum_length || ')', '')
	FROM information_schema.columns
	WHERE table_schema = current_schema() AND table_name IN ($ALL_TABLES)
	ORDER BY table_name, ordinal_position" fresh)
same "$got_cols" "$want_cols" "every column has the catalogue's name and type (json, not jsonb; times bigint)"

got=$(psql_q "SELECT table_name || '.' || column_name || ' ' || is_nullable || ' ' || coalesce(column_default, '-')
	FROM information_schema.columns
	WHERE table_schema = current_schema() AND (table_name, column_name) IN
	(('chat_message', 'done'), ('chat_message', 'chat_id'), ('channel_member', 'is_active'),
	 ('message', 'is_pinned'), ('chat', 'meta'), ('user', 'name'), ('tidings_event', 'applied_at'))
	ORDER BY 1" fresh)
same "$got" "channel_member.is_active NO true
chat.meta YES '{}'::json
chat_message.chat_id NO -
chat_message.done YES true
message.is_pinned NO false
tidings_event.applied_at NO now()
user.name NO -" "nullability and defaults that writers rely on"

got=$(psql_q "SELECT t.relname FROM pg_class t
	WHERE t.relnamespace = current_schema()::regnamespace AND t.relkind = 'r'
	AND t.relname IN ($ALL_TABLES) AND obj_description(t.oid, 'pg_class') IS NULL" fresh)
is "$got" "" "every table has a comment"
got=$(psql_q "SELECT t.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid
	WHERE t.relnamespace = current_schema()::regnamespace AND t.relname IN ($ALL_TABLES)
	AND a.attnum > 0 AND NOT a.attisdropped AND col_description(t.oid, a.attnum) IS NULL" fresh)
is "$got" "" "every column has a comment"
like "$(psql_q "SELECT col_description('channel'::regclass, 9)" fresh)" "nanoseconds" "comments give the time unit (channel.created_at: ns)"
like "$(psql_q "SELECT col_description('chat'::regclass, 5)" fresh)" "seconds" "comments give the time unit (chat.created_at: s)"

got=$(psql_q "SELECT tablename || ' ' || indexname FROM pg_indexes
	WHERE schemaname = current_schema() AND tablename IN ('chat', 'chat_message', 'group_member', 'access_grant', 'user')
	ORDER BY 1" fresh)
same "$got" "access_grant access_grant_pkey
access_grant uq_access_grant_grant
chat chat_pkey
chat chat_share_id_key
chat folder_id_idx
chat folder_id_user_id_idx
chat ix_chat_created_at
chat ix_chat_updated_at
chat ix_chat_user_id
chat updated_at_user_id_idx
chat user_id_archived_idx
chat user_id_pinned_idx
chat_message chat_message_chat_parent_idx
chat_message chat_message_model_created_idx
chat_message chat_message_pkey
chat_message chat_message_user_created_idx
chat_message ix_chat_message_chat_id
chat_message ix_chat_message_created_at
chat_message ix_chat_message_model_id
chat_message ix_chat_message_user_id
group_member group_member_pkey
group_member ix_group_member_user_id_group_id
group_member uq_group_member_group_user
user user_email_key
user user_pkey" "Open WebUI's indexes and unique constraints"

got=$(psql_q "SELECT conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
	WHERE contype = 'f' AND connamespace = current_schema()::regnamespace ORDER BY 1" fresh)
same "$got" "chat_message FOREIGN KEY (chat_id) REFERENCES chat(id) ON DELETE CASCADE
group_member FOREIGN KEY (group_id) REFERENCES \"group\"(id) ON DELETE CASCADE" "foreign keys with ON DELETE CASCADE"

got=$(psql_q "INSERT INTO chat (id, user_id, chat, created_at, updated_at) VALUES ('c1', 'u1', '{}', 1, 1);
	INSERT INTO chat_message (id, chat_id, role) VALUES ('c1-m1', 'c1', 'user');
	INSERT INTO \"group\" (id) VALUES ('g1');
	INSERT INTO group_member (id, group_id, user_id) VALUES ('gm1', 'g1', 'u1');
	DELETE FROM chat; DELETE FROM \"group\";
	SELECT (SELECT count(*) FROM chat_message) + (SELECT count(*) FROM group_member)" fresh)
is "$got" 0 "deleting a chat or group deletes its chat_message and group_member rows"

got=$(psql_q "INSERT INTO tidings_event (id, kind) VALUES ('gw1-1-1', 'event') ON CONFLICT DO NOTHING RETURNING id;
	INSERT INTO tidings_event (id, kind) VALUES ('gw1-1-1', 'event') ON CONFLICT DO NOTHING RETURNING id" fresh)
is "$got" "gw1-1-1" "tidings_event takes an event id once"

want=""
for f in "${FILES[@]}"; do
	b=${f##*/}
	want+="$((10#${b%%_*})) $(basename "${b#????_}" .sql) $(sha256sum <"$f" | cut -d' ' -f1)"$'\n'
done
got=$(psql_q "SELECT version || ' ' || name || ' ' || checksum FROM tidings_schema_migrations ORDER BY version" fresh)
same "$got" "${want%$'\n'}" "each migration is recorded with the sha256sum of its file"

# ---------------------------------------------------------------- second run

before=$(psql_q "SELECT version || ' ' || applied_at FROM tidings_schema_migrations ORDER BY 1" fresh)
OUT=$(env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 \
	DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/fresh" timeout 30 "$CTL" migrate 2>&1)
RC=$?
is "$RC" 0 "a second run exits 0 (given Open WebUI's postgresql+psycopg:// spelling)"
like "$OUT" "nothing to apply" "and applies nothing"
is "$(grep -cE '^applied [0-9]{4}_' <<<"$OUT")" 0 "no migration line"
is "$(psql_q "SELECT version || ' ' || applied_at FROM tidings_schema_migrations ORDER BY 1" fresh)" "$before" \
	"the records are untouched"

migrate fresh --status
is "$RC" 0 "--status exits 0"
is "$(grep -c ' applied ' <<<"$OUT")" "$N" "--status lists every migration as applied"

# ---------------------------------------------------------------- an Open WebUI database

pg_createdb owui
psql_q "CREATE TABLE chat (id varchar PRIMARY KEY, user_id varchar, title varchar(200), chat json,
		created_at bigint, updated_at bigint, owui_extra text);
	COMMENT ON TABLE chat IS 'their chat table';
	COMMENT ON COLUMN chat.title IS 'their title';
	INSERT INTO chat VALUES ('c1', 'u1', 'Hello', '{\"history\": {\"messages\": {}}}', 1700000000, 1700000001, 'keep me')" owui
migrate owui
is "$RC" 0 "migrate on an existing Open WebUI database exits 0"
is "$(grep -cE '^applied [0-9]{4}_' <<<"$OUT")" "$N" "it applies all $N migrations"
is "$(psql_q "SELECT id || '|' || title || '|' || chat::text || '|' || created_at || '|' || owui_extra FROM chat" owui)" \
	'c1|Hello|{"history": {"messages": {}}}|1700000000|keep me' "their row is untouched"
is "$(psql_q "SELECT string_agg(column_name || ' ' || data_type || coalesce('(' || character_maximum_length || ')', ''), ', ' ORDER BY ordinal_position)
	FROM information_schema.columns WHERE table_name = 'chat'" owui)" \
	"id character varying, user_id character varying, title character varying(200), chat json, created_at bigint, updated_at bigint, owui_extra text" \
	"their columns are kept as they are: none added, changed or dropped"
is "$(psql_q "SELECT obj_description('chat'::regclass, 'pg_class') || '|' || col_description('chat'::regclass, 3)
	|| '|' || coalesce(col_description('chat'::regclass, 2), 'none')" owui)" "their chat table|their title|none" \
	"their comments are kept and none are added"
is "$(psql_q "SELECT string_agg(indexname, ' ') FROM pg_indexes WHERE tablename = 'chat'" owui)" "chat_pkey" \
	"no index is added to their table"
is "$(psql_q "INSERT INTO chat_message (id, chat_id, role) VALUES ('c1-m1', 'c1', 'assistant') RETURNING id" owui)" \
	"c1-m1" "the missing tables were created, chat_message referencing their chat"
got=$(psql_q "SELECT count(*) FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid
	WHERE t.relname IN ($ALL_TABLES) AND t.relname <> 'chat' AND t.relkind = 'r'
	AND a.attnum > 0 AND NOT a.attisdropped AND col_description(t.oid, a.attnum) IS NULL" owui)
is "$got" 0 "the tables Tidings created there are commented"

# ---------------------------------------------------------------- refusals

psql_q "UPDATE tidings_schema_migrations SET checksum = repeat('0', 64) WHERE version = 3" fresh
migrate fresh
is "$RC" 2 "a changed checksum is refused with exit 2"
like "$OUT" "0003_[a-z_]+ was applied with checksum 0{64}" "naming the migration and both checksums"
migrate fresh --status
is "$RC" 2 "--status reports the mismatch too (exit 2)"

psql_q "INSERT INTO tidings_schema_migrations (version, name, checksum) VALUES (9999, 'from_the_future', 'x')" owui
migrate owui
is "$RC" 2 "a database migrated by a newer release is refused with exit 2"
like "$OUT" "migration 9999, which this tidingsctl does not know" "and says so"

# A legacy "group" without a primary key cannot be referenced by
# group_member: that migration fails, and is rolled back whole.
pg_createdb legacy
psql_q 'CREATE TABLE "group" (id text, name text)' legacy
migrate legacy
is "$RC" 1 "a migration that fails exits 1"
like "$OUT" "0002_[a-z_]+ failed: ERROR: .*unique constraint" "naming the migration and Postgres' error"
is "$(psql_q "SELECT string_agg(version::text, ' ') FROM tidings_schema_migrations" legacy)" 1 \
	"only the migrations before it are recorded"
is "$(psql_q "SELECT coalesce(to_regclass('\"user\"')::text, '-') || ' ' || coalesce(to_regclass('group_member')::text, '-')" legacy)" \
	"- -" "nothing of the failed migration remains"
psql_q 'ALTER TABLE "group" ADD PRIMARY KEY (id)' legacy
migrate legacy
is "$RC" 0 "once the cause is fixed, migrate resumes"
is "$(grep -cE '^applied [0-9]{4}_' <<<"$OUT")" "$((N - 1))" "with the migrations still pending"

# ---------------------------------------------------------------- two at once

pg_createdb race
for i in 1 2 3; do
	env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 DATABASE_URL="$(pg_url race)" \
		timeout 30 "$CTL" migrate >"$TMP/race$i.out" 2>&1 &
	pids[i]=$!
done
rcs=""
for i in 1 2 3; do
	wait "${pids[i]}"
	rcs+="$? "
done
is "$rcs" "0 0 0 " "three migrators started together all exit 0"
is "$(cat "$TMP"/race?.out | grep -cE '^applied [0-9]{4}_')" "$N" "each migration is applied exactly once between them"
is "$(psql_q "SELECT count(*) FROM tidings_schema_migrations" race)" "$N" "and recorded once"

stop_pg
check "postgres stopped" test -z "$PG_PID"
done_testing
