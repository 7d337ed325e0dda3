# shellcheck shell=bash
# worker.sh - the whole stack for worker tests: source after lib.sh and
# pg.sh.
#
# start_db_stack            redis + a private Postgres with database owui,
#                           migrated; sets DB (its URL); bails on failure
# worker_start NAME [VAR=value...]
#                           starts a worker (ASan build unless
#                           TIDINGS_WORKER_BIN), tracked for cleanup; its PID
#                           is in WPID_NAME, its log in $TMP/NAME.log

WORKER=${TIDINGS_WORKER_BIN:-$TOP/build/asan/tidings-worker}

start_db_stack() {
	[ -x "$WORKER" ] || bail "worker binary $WORKER exists" "make build/asan/tidings-worker"
	require_gateway
	require_pg
	start_redis || bail "redis starts"
	start_pg || bail "postgres starts"
	pg_createdb owui
	DB=$(pg_url owui)
	DATABASE_URL=$DB timeout 30 "$TOP/build/tidingsctl" migrate >"$TMP/migrate.out" 2>&1 ||
		bail "migrations apply" "$(cat "$TMP/migrate.out")"
}

worker_start() {
	local name=$1 pid
	shift
	(
		close_client_fds
		exec env -i PATH="$PATH" DATABASE_URL="$DB" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
			TIDINGS_WORKER_ID="$name" TIDINGS_LOG_FORMAT=text TIDINGS_WORKER_ADMIN_LISTEN= \
			ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$@" "$WORKER" >>"$TMP/$name.log" 2>&1
	) &
	pid=$!
	track_pid "$pid"
	eval "WPID_$name=$pid"
}
