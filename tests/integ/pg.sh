# shellcheck shell=bash
# pg.sh - a private PostgreSQL cluster for integration tests.
#
# Source it after lib.sh: `. "$(dirname "$0")/pg.sh"`. The cluster lives in
# $TMP/pg (removed with $TMP), listens on 127.0.0.1 only, on a free port,
# with its socket in $TMP/pg/sock; its postmaster is tracked by lib.sh, so
# it is stopped on any exit even when the test does not call stop_pg.
# Authentication is `trust` for the superuser postgres: loopback only, and
# gone when the test ends.
#
# require_pg               bail unless initdb/postgres/psql are installed
# start_pg                 initdb + postgres -> PG_PORT, PG_PID (1 when it failed)
# stop_pg                  fast shutdown (SIGINT), waits for the postmaster
# pg_url [DB]              postgresql:// URL of DB (default postgres)
# psql_q SQL [DB]          runs SQL, prints rows unaligned, '|'-separated, no
#                          headers; exit status of psql (errors on stderr)
# pg_createdb DB           CREATE DATABASE DB
#
# Environment understood:
#   PG_BIN   directory of initdb and postgres (default: the newest
#            /usr/lib/postgresql/*/bin, else whatever is on PATH)
#
# PostgreSQL refuses to run as root: as root the cluster belongs to the
# `postgres` user (initdb via runuser; the server via setpriv, which execs
# rather than forks, so the PID we track is the postmaster itself).

PG_PORT=
PG_PID=
PG_DIR=$TMP/pg

if [ -z "${PG_BIN:-}" ]; then
	PG_BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
fi

pg_tool() {
	if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/$1" ]; then
		echo "$PG_BIN/$1"
	else
		command -v "$1"
	fi
}

PSQL=$(pg_tool psql)

require_pg() {
	local t
	for t in initdb postgres psql; do
		[ -n "$(pg_tool "$t")" ] || bail "PostgreSQL is installed ($t)" "set PG_BIN or install postgresql"
	done
}

# as_pg CMD...: runs CMD as the owner of the cluster (exec, no fork).
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
	else
		exec "$@"
	fi
}

pg_ready() {
	"$PSQL" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1
}

start_pg() {
	local pid _
	mkdir -p "$PG_DIR/data" "$PG_DIR/sock"
	if [ "$(id -u)" = 0 ]; then
		# The postgres user must reach its directories under our 0700 $TMP:
		# traverse only, it cannot list what else the test keeps there.
		chmod 711 "$TMP"
		chown -R postgres: "$PG_DIR"
	fi
	(as_pg "$(pg_tool initdb)" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C \
		--no-sync) >"$TMP/pg-initdb.log" 2>&1 || {
		diag "initdb failed: $(tail -n 5 "$TMP/pg-initdb.log")"
		return 1
	}
	for _ in 1 2 3; do
		PG_PORT=$(free_port) || return 1
		(
			close_client_fds
			# Durability is of no use to a throwaway cluster; speed is.
			as_pg "$(pg_tool postgres)" -D "$PG_DIR/data" -p "$PG_PORT" -k "$PG_DIR/sock" \
				-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
				-c full_page_writes=off
		) >>"$TMP/pg-server.log" 2>&1 &
		pid=$!
		track_pid "$pid"
		if wait_until 20 pg_ready; then
			PG_PID=$pid
			return 0
		fi
		stop_pid "$pid" 2
	done
	diag "postgres did not start: $(tail -n 5 "$TMP/pg-server.log")"
	return 1
}

# Fast shutdown: SIGINT aborts open sessions, where SIGTERM (what lib.sh's
# cleanup sends) would wait for them to end.
stop_pg() {
	local i
	[ -n "$PG_PID" ] || return 0
	kill -INT "$PG_PID" 2>/dev/null
	for ((i = 0; i < 200; i++)); do
		alive "$PG_PID" || break
		sleep 0.05
	done
	stop_pid "$PG_PID" 2
	PG_PID=
}

pg_url() { echo "postgresql://postgres@127.0.0.1:$PG_PORT/${1:-postgres}"; }

psql_q() {
	timeout 20 "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres \
		-d "${2:-postgres}" -c "$1"
}

pg_createdb() { psql_q "CREATE DATABASE \"$1\"" >/dev/null; }
