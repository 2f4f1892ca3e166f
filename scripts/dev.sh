#!/usr/bin/env bash
# Local development run (`make run`): private PostgreSQL and Redis under .dev/ on loopback,
# then the service with config/dev.yaml. Ctrl-C stops the service, then the servers.
#
# Usage: scripts/dev.sh [run|servers|stop]
#   run      (default) start the servers, build and run `datastorage serve`
#   servers  start the servers only and wait for Ctrl-C (same as DEV_SERVERS_ONLY=1)
#   stop     stop servers left running by an earlier DEV_KEEP_SERVERS=1 run
#
# Environment:
#   DEV_PG_PORT=15432, DEV_REDIS_PORT=16379   ports (127.0.0.1 only)
#   DEV_SERVERS_ONLY=1                        as `servers`
#   DEV_KEEP_SERVERS=1                        leave the servers running on exit
#
# Data stays between runs: .dev/pg (PostgreSQL cluster, created on the first run with a
# `datastorage` role, password `datastorage`, owning a `datastorage` database), .dev/redis
# (AOF on, as in production). Logs: .dev/postgres.log, .dev/redis.log. A server still running
# from an earlier run is reused. `make clean-dev` stops the servers and deletes .dev/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEV=$ROOT/.dev
PG_BIN=/usr/lib/postgresql/15/bin
PG_DATA=$DEV/pg
PG_LOG=$DEV/postgres.log
PG_PORT=${DEV_PG_PORT:-15432}
REDIS_DIR=$DEV/redis
REDIS_LOG=$DEV/redis.log
REDIS_PIDFILE=$REDIS_DIR/redis.pid
REDIS_PORTFILE=$REDIS_DIR/port
REDIS_PORT=${DEV_REDIS_PORT:-16379}
DEFAULT_PG_PORT=15432     # the ports config/dev.yaml names
DEFAULT_REDIS_PORT=16379

mode=${1:-run}
if [[ ${DEV_SERVERS_ONLY:-} == 1 && $mode == run ]]; then
	mode=servers
fi
case $mode in
run | servers | stop) ;;
*)
	sed -n '2,20s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac

log() { echo "dev: $*" >&2; }
die() {
	log "$*"
	exit 1
}

if [[ $(id -u) -eq 0 ]]; then
	# PostgreSQL refuses to run as root: run it as the postgres user of the Debian package.
	as_pg() { runuser -u postgres -- "$@"; }
else
	as_pg() { "$@"; }
fi

pg_running() {
	[[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

psql_admin() {
	as_pg "$PG_BIN/psql" -h "$PG_DATA" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

pg_init() {
	[[ -f $PG_DATA/PG_VERSION ]] && return
	if [[ $(id -u) -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "no postgres user: is postgresql-15 installed? (scripts/deps.sh)"
		as_pg test -x "$DEV" || die "the postgres user cannot reach $DEV (a parent directory is not searchable by others, e.g. /root): move the checkout or chmod o+x its parents"
	fi
	log "creating the PostgreSQL cluster in $PG_DATA (first run)"
	rm -rf "$PG_DATA" # an earlier initdb that did not finish
	mkdir -p "$PG_DATA"
	chmod 700 "$PG_DATA"
	[[ $(id -u) -ne 0 ]] || chown postgres:postgres "$PG_DATA"
	if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 >"$DEV/initdb.log" 2>&1; then
		tail -n 20 "$DEV/initdb.log" >&2
		rm -rf "$PG_DATA"
		die "initdb failed (full output in .dev/initdb.log)"
	fi
}

pg_start() {
	if pg_running; then
		local port
		port=$(sed -n 4p "$PG_DATA/postmaster.pid")
		log "PostgreSQL already running on port $port (from an earlier run): reusing it"
		PG_PORT=$port
	else
		port_in_use "$PG_PORT" && die "port $PG_PORT is taken by another program: set DEV_PG_PORT"
		log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: .dev/postgres.log)"
		touch "$PG_LOG"
		[[ $(id -u) -ne 0 ]] || chown postgres:postgres "$PG_LOG"
		if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories='$PG_DATA'" \
			start >/dev/null; then
			tail -n 30 "$PG_LOG" >&2
			die "PostgreSQL did not start"
		fi
	fi
	# Every run, so an interrupted first run heals itself.
	psql_admin <<-'SQL'
		SELECT 'CREATE ROLE datastorage LOGIN PASSWORD ''datastorage'''
		WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datastorage') \gexec
		SELECT 'CREATE DATABASE datastorage OWNER datastorage'
		WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'datastorage') \gexec
	SQL
}

pg_stop() {
	if pg_running; then
		log "stopping PostgreSQL"
		as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 120 stop >/dev/null ||
			log "PostgreSQL did not stop; see .dev/postgres.log"
	fi
}

redis_pid() {
	local pid
	[[ -f $REDIS_PIDFILE ]] || return 1
	pid=$(<"$REDIS_PIDFILE")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && grep -q redis "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }

redis_start() {
	mkdir -p "$REDIS_DIR"
	if redis_pid >/dev/null && [[ -f $REDIS_PORTFILE ]]; then
		REDIS_PORT=$(<"$REDIS_PORTFILE")
		log "Redis already running on port $REDIS_PORT (from an earlier run): reusing it"
	else
		port_in_use "$REDIS_PORT" && die "port $REDIS_PORT is taken by another program: set DEV_REDIS_PORT"
		log "starting Redis on 127.0.0.1:$REDIS_PORT, AOF on (log: .dev/redis.log)"
		echo "$REDIS_PORT" >"$REDIS_PORTFILE"
		redis-server --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
			--bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" \
			--appendonly yes --appendfsync everysec --save "" ||
			die "redis-server failed; see .dev/redis.log"
	fi
	# Loading a big AOF takes a while; PING answers -LOADING until it is done.
	for _ in $(seq 600); do
		redis_ping "$REDIS_PORT" && return
		sleep 0.1
	done
	tail -n 30 "$REDIS_LOG" >&2
	die "Redis does not answer PING on port $REDIS_PORT"
}

redis_stop() {
	local pid
	pid=$(redis_pid) || return 0
	log "stopping Redis"
	kill -TERM "$pid" # flushes the AOF and exits
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "Redis did not stop in 30 s: killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

if [[ $mode == stop ]]; then
	redis_stop
	pg_stop
	exit 0
fi

bash scripts/deps.sh

SVC_PID=
WAIT_PID=
cleanup() {
	local rc=$?
	set +e
	trap 'log "stopping, please wait"' INT TERM
	if [[ -n $SVC_PID ]] && kill -0 "$SVC_PID" 2>/dev/null; then
		log "stopping the service (SIGTERM)"
		kill -TERM "$SVC_PID"
		# The service drains within server.shutdownTimeout (60 s by default).
		for _ in $(seq 900); do
			kill -0 "$SVC_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$SVC_PID" 2>/dev/null; then
			log "the service did not stop in 90 s: killing it"
			kill -KILL "$SVC_PID"
		fi
		wait "$SVC_PID" 2>/dev/null
	fi
	if [[ -n $WAIT_PID ]]; then
		kill "$WAIT_PID" 2>/dev/null
		wait "$WAIT_PID" 2>/dev/null
	fi
	if [[ ${DEV_KEEP_SERVERS:-} == 1 ]]; then
		log "leaving PostgreSQL and Redis running (DEV_KEEP_SERVERS=1); scripts/dev.sh stop stops them"
	else
		redis_stop
		pg_stop
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$DEV"
if [[ $mode == run ]]; then
	version=$(git describe --always --dirty 2>/dev/null || echo dev)
	log "building .dev/datastorage ($version)"
	go build -o "$DEV/datastorage" -ldflags "-X kubernaut.ai/datastorage/internal/version.Version=$version" ./cmd/datastorage
fi

pg_init
pg_start
redis_start

DB_URL="postgres://datastorage:datastorage@127.0.0.1:$PG_PORT/datastorage?sslmode=disable"
log "PostgreSQL: $DB_URL"
log "Redis:      127.0.0.1:$REDIS_PORT"

if [[ $mode == servers ]]; then
	log "servers up; Ctrl-C stops them"
	sleep infinity &
	WAIT_PID=$!
	wait "$WAIT_PID"
	exit 0
fi

# config/dev.yaml names the default ports; other ports go in through the environment.
[[ $PG_PORT == "$DEFAULT_PG_PORT" ]] || export DATASTORAGE_DATABASE_URL=$DB_URL
[[ $REDIS_PORT == "$DEFAULT_REDIS_PORT" ]] || export DATASTORAGE_REDIS_ADDR=127.0.0.1:$REDIS_PORT
# The service rejects DATASTORAGE_ variables it does not know, such as the tests' ones.
for v in "${!DATASTORAGE_TEST_@}"; do unset "$v"; done

log "running datastorage serve --config config/dev.yaml (Ctrl-C stops everything)"
# In a session of its own, so that a terminal's Ctrl-C reaches only this script, which then
# sends SIGTERM, as Kubernetes would, and waits for the graceful shutdown.
setsid "$DEV/datastorage" serve --config config/dev.yaml &
SVC_PID=$!
set +e
wait "$SVC_PID"
rc=$?
SVC_PID=
set -e
log "the service exited with status $rc"
exit "$rc"
