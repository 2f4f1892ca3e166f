#!/usr/bin/env bash
# Installs what the tests and `make run` need from Debian packages, only when it is missing:
#   postgresql-15  (server binaries in /usr/lib/postgresql/15/bin)
#   redis-server
#   redis-sentinel (the Sentinels of the Redis failover tests; Debian 12 and 13 ship the
#                  binary /usr/bin/redis-sentinel in this package of its own)
#   make           (so that .ci/run can call it on a bare image)
#   gcc, libc6-dev (the race detector of `make race` needs cgo, hence a C compiler)
#   shellcheck     (the workflow test runs the workflows' scripts through it)
#   chromium       (the console's browser tests drive it headless)
# Idempotent: prints what it found and exits when everything is there. Runs apt-get as root,
# or through sudo otherwise. Never prompts (DEBIAN_FRONTEND=noninteractive).
#
# On a machine with systemd the packages start their own default instances (PostgreSQL on
# 5432, Redis on 6379); nothing here uses them: the tests and `make run` start private
# servers on other ports.
set -euo pipefail

missing=()
if [[ -x /usr/lib/postgresql/15/bin/postgres && -x /usr/lib/postgresql/15/bin/initdb ]]; then
	echo "deps: postgresql-15 found (/usr/lib/postgresql/15/bin)"
else
	missing+=(postgresql-15)
fi
if command -v redis-server >/dev/null 2>&1; then
	echo "deps: redis-server found ($(command -v redis-server))"
else
	missing+=(redis-server)
fi
if command -v redis-sentinel >/dev/null 2>&1; then
	echo "deps: redis-sentinel found ($(command -v redis-sentinel))"
else
	missing+=(redis-sentinel)
fi
if ! command -v make >/dev/null 2>&1; then
	missing+=(make)
fi
if ! command -v gcc >/dev/null 2>&1; then
	missing+=(gcc)
fi
if [[ ! -e /usr/include/stdlib.h ]]; then
	missing+=(libc6-dev)
fi
if ! command -v shellcheck >/dev/null 2>&1; then
	missing+=(shellcheck)
fi
if ! command -v chromium >/dev/null 2>&1; then
	missing+=(chromium)
fi

if ((${#missing[@]} == 0)); then
	exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
	as_root=()
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo)
else
	echo "deps: need to install ${missing[*]}, but not root and no sudo; install them and retry" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: need ${missing[*]}, but apt-get is missing (Debian 12 expected); install them and retry" >&2
	exit 1
fi

echo "deps: installing ${missing[*]} with apt-get"
echo "+ apt-get update"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
echo "+ apt-get install -y ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Check the result rather than trust it.
for pkg in "${missing[@]}"; do
	case $pkg in
	postgresql-15) ok=$([[ -x /usr/lib/postgresql/15/bin/postgres ]] && echo y || true) ;;
	redis-server) ok=$(command -v redis-server >/dev/null 2>&1 && echo y || true) ;;
	redis-sentinel) ok=$(command -v redis-sentinel >/dev/null 2>&1 && echo y || true) ;;
	make) ok=$(command -v make >/dev/null 2>&1 && echo y || true) ;;
	gcc) ok=$(command -v gcc >/dev/null 2>&1 && echo y || true) ;;
	libc6-dev) ok=$([[ -e /usr/include/stdlib.h ]] && echo y || true) ;;
	shellcheck) ok=$(command -v shellcheck >/dev/null 2>&1 && echo y || true) ;;
	chromium) ok=$(command -v chromium >/dev/null 2>&1 && echo y || true) ;;
	esac
	if [[ $ok != y ]]; then
		echo "deps: $pkg still missing after apt-get install" >&2
		exit 1
	fi
done
echo "deps: done"
