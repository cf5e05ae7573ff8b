#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for developing an app by hand (runner starts its own for real
# runs): ./dev-postgres.sh PORT [DIR]. Prints the DATABASE_URL. Stop it with
# `su postgres -c "pg_ctl -D DIR stop"` (or kill the postgres process).
set -euo pipefail
port=${1:?usage: dev-postgres.sh PORT [DIR]}
dir=${2:-/tmp/runner-dev-pg-$port}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dir"
mkdir -p "$dir"
chown postgres "$dir"
su postgres -c "$bin/initdb -D $dir/data -U runner --auth=trust >/dev/null"
su postgres -c "$bin/pg_ctl -D $dir/data -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300' -l $dir/log start >/dev/null"
for _ in $(seq 50); do
    su postgres -c "$bin/pg_isready -h 127.0.0.1 -p $port" >/dev/null 2>&1 && break
    sleep 0.1
done
su postgres -c "psql -h 127.0.0.1 -p $port -U runner -d postgres -qc 'CREATE DATABASE bench'" >/dev/null
su postgres -c "psql -h 127.0.0.1 -p $port -U runner -d bench -q -f $here/init.sql" >/dev/null
echo "postgresql://runner:runner@127.0.0.1:$port/bench"
