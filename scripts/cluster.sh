#!/usr/bin/env bash
# A cluster on loopback, with real components (docs/deployment.md):
#
#     scripts/cluster.sh up [N]     # PostgreSQL, N replicas (default 3) sharing --store and --data, nginx
#     scripts/cluster.sh down       # stops everything `up` started and removes its files
#
# `up` installs what is missing (Debian's postgresql and nginx), builds the gateway (unless
# PREFAB_CLUSTER_NO_BUILD=1), starts PostgreSQL in a throw-away data directory, the replicas and
# nginx, each on a loopback port it picks, and returns once all of them answer. It prints
#
#     store postgres://gateway@127.0.0.1:PORT/postgres
#     balancer http://127.0.0.1:PORT
#     replica http://127.0.0.1:PORT PID          (one line per replica)
#
# Replica I runs with --route-id rI (nginx routes /mcp by that prefix of Mcp-Session-Id). Extra
# `serve` flags for every replica go in PREFAB_CLUSTER_FLAGS (e.g. "--replica-lease 3").
# What it started is recorded in PREFAB_CLUSTER_DIR (default .build/cluster), which `down` reads.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

dir=${PREFAB_CLUSTER_DIR:-$PWD/.build/cluster}
state="$dir/state"

# run_as_db COMMAND...: PostgreSQL refuses to run as root: as root, its programs run as the
# `postgres` user the Debian package creates.
run_as_db() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_components() {
    local have_nginx=0
    if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then have_nginx=1; fi
    if ! ls -d /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || [ "$have_nginx" != 1 ]; then
        echo "cluster: installing postgresql and nginx (Debian packages)" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql nginx >/dev/null
    fi
}

down() {
    [ -f "$state" ] || return 0
    local line kind pid
    while read -r kind _ pid _; do
        if [ "$kind" = replica ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
    done <"$state"
    while read -r kind _ pid _; do
        [ "$kind" = replica ] || continue
        for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done <"$state"
    if [ -f "$dir/nginx.pid" ]; then
        pid=$(cat "$dir/nginx.pid")
        kill -QUIT "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    line=$(grep '^pgdata ' "$state" || true)
    if [ -n "$line" ]; then
        local pgdata pgbin
        pgdata=$(echo "$line" | cut -d' ' -f2)
        pgbin=$(echo "$line" | cut -d' ' -f3)
        run_as_db "$pgbin/pg_ctl" -D "$pgdata/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$pgdata"
    fi
    rm -rf "$dir"
}

up() {
    local count=${1:-3}
    down
    install_components
    if [ "${PREFAB_CLUSTER_NO_BUILD:-0}" != 1 ]; then build_gateway >&2; fi
    mkdir -p "$dir/data" "$dir/nginx-temp"
    : >"$state"

    # PostgreSQL: a data directory of its own under /tmp (the postgres user must reach it).
    local pgbin pgdata pgport store
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    pgdata=$(mktemp -d /tmp/prefab-cluster-pg.XXXXXX)
    echo "pgdata $pgdata $pgbin" >>"$state"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$pgdata"; fi
    run_as_db "$pgbin/initdb" -D "$pgdata/data" -U gateway --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; return 1; }
    pgport=$(free_port)
    run_as_db "$pgbin/pg_ctl" -D "$pgdata/data" -l "$pgdata/postgres.log" -w -t 30 \
        -o "-p $pgport -k $pgdata -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null ||
        { cat "$pgdata/postgres.log" >&2; return 1; }
    store="postgres://gateway@127.0.0.1:$pgport/postgres"
    echo "store $store"

    # The replicas: the same store, the same data directory (files written by any of them).
    local i port pid ports=()
    for i in $(seq 1 "$count"); do
        port=$(free_port)
        # shellcheck disable=SC2086
        setsid .build/debug/prefab-gateway serve --host 127.0.0.1 --port "$port" --store "$store" \
            --data "$dir/data" --route-id "r$i" ${PREFAB_CLUSTER_FLAGS:-} >"$dir/replica-$i.log" 2>&1 </dev/null &
        pid=$!
        echo "replica http://127.0.0.1:$port $pid" >>"$state"
        ports+=("$port")
    done

    # nginx in front: streams unbuffered, long reads, HTTP/1.1 kept-alive upstreams; /mcp by session.
    local balancer servers="" routes="" singles="" port_ index=0
    balancer=$(free_port)
    for port_ in "${ports[@]}"; do
        index=$((index + 1))
        servers+="        server 127.0.0.1:$port_ max_fails=1 fail_timeout=2s;"$'\n'
        routes+="        ~^r$index\\. replica_r$index;"$'\n'
        singles+="    upstream replica_r$index { server 127.0.0.1:$port_; }"$'\n'
    done
    local proxy='proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_next_upstream error timeout http_502 http_503;'
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/nginx-temp/body;
    proxy_temp_path $dir/nginx-temp/proxy;
    fastcgi_temp_path $dir/nginx-temp/fastcgi;
    uwsgi_temp_path $dir/nginx-temp/uwsgi;
    scgi_temp_path $dir/nginx-temp/scgi;
    client_max_body_size 2m;
    upstream gateways {
$servers        keepalive 32;
    }
    # MCP sessions live in one replica's memory: a session id starts with its replica's --route-id,
    # which picks that replica; an initialize (no id yet) goes to any.
    map \$http_mcp_session_id \$mcp_upstream {
$routes        default gateways;
    }
$singles
    server {
        listen 127.0.0.1:$balancer;
        location / {
            proxy_pass http://gateways;
            $proxy
        }
        location /mcp {
            proxy_pass http://\$mcp_upstream;
            $proxy
        }
    }
}
EOF
    local nginx_bin
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    "$nginx_bin" -e "$dir/nginx-error.log" -p "$dir" -c "$dir/nginx.conf" ||
        { cat "$dir/nginx-error.log" >&2; return 1; }

    # Every replica ready (its store too), then the balancer.
    local url ready
    while read -r kind url pid; do
        [ "$kind" = replica ] || continue
        ready=0
        for _ in $(seq 1 300); do
            if curl -fs "$url/health" 2>/dev/null | grep -q '"ready":true'; then ready=1; break; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if [ "$ready" != 1 ]; then
            tail -n 30 "$dir"/replica-*.log >&2
            echo "cluster: the replica at $url did not start" >&2
            return 1
        fi
    done <"$state"
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$balancer/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$balancer/health" >/dev/null
    echo "balancer http://127.0.0.1:$balancer" | tee -a "$state"
    grep '^replica ' "$state"
}

case "${1:-}" in
up)
    shift
    if ! up "$@"; then
        down
        exit 1
    fi
    ;;
down) down ;;
*)
    echo "usage: scripts/cluster.sh up [N] | down" >&2
    exit 2
    ;;
esac
