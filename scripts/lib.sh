# Helpers shared by the shell scripts under scripts/: counted checks and their summary, a free
# loopback port, root for a package install, and the gateway built, started, waited for and
# stopped. Each script sources it before changing directory, then does its own `cd`:
#
#     source "$(dirname "$0")/lib.sh"
#
# Gateways are started from the repository root (.build/debug/prefab-gateway).

# The script's name, for messages: smoke-test, api-fuzz, ...
script=$(basename "$0" .sh)
# This folder, absolute: the scripts change directory after sourcing this file.
scripts_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

passed=0
failed=0
# How `check` reports: check_ok=1 also prints "ok: NAME" for a check that passes; check_log=FILE
# sends each command's output to FILE and shows it (indented, last 40 lines) only when it fails.
check_ok=${check_ok:-0}
check_log=${check_log:-}

# check NAME COMMAND...: runs COMMAND, counts it as passed or failed, and prints "FAIL: NAME"
# when it fails (see check_ok and check_log).
check() {
    local name=$1 status=0
    shift
    if [ -n "$check_log" ]; then
        "$@" >"$check_log" 2>&1 || status=$?
    else
        "$@" || status=$?
    fi
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        [ "$check_ok" != 1 ] || echo "ok: $name"
    else
        failed=$((failed + 1))
        echo "FAIL: $name"
        [ -z "$check_log" ] || sed 's/^/    /' "$check_log" | tail -n 40
    fi
    return 0
}

# checks_summary: prints "N passed, M failed" and fails when a check failed.
checks_summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# free_port: prints a TCP port that is free on 127.0.0.1 now, below the kernel's ephemeral range
# (free_port.py says why).
free_port() {
    python3 "$scripts_dir/free_port.py"
}

# as_root COMMAND...: runs COMMAND as root: directly, or through sudo when there is one.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "$script: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

# build_gateway: builds the prefab-gateway executable, showing the build's output only if it fails.
# A build killed by a signal is tried once more: swift-build itself once crashed (SIGSEGV in
# libdispatch) on an up-to-date tree in a fresh-clone CI run; a compile error fails at once.
build_gateway() {
    local output status=0
    output=$(swift build --product prefab-gateway 2>&1) || status=$?
    if [ "$status" -gt 128 ]; then
        echo "$script: swift build died by signal $((status - 128)); building once more"
        status=0
        output=$(swift build --product prefab-gateway 2>&1) || status=$?
    fi
    if [ "$status" -ne 0 ]; then
        echo "$output"
        echo "$script: the build failed"
        return 1
    fi
}

gateway_pids=()
# start_gateway PORT LOG [ARGS...]: starts `prefab-gateway serve --host 127.0.0.1 --port PORT ARGS`
# in the background with its output in LOG, and waits up to 10 s for its /health. Its PID is left
# in gateway_pid; stop_gateways stops it. Fails, showing the end of LOG, if the gateway exits or
# does not answer in time. Variables set before the call (VAR=value start_gateway ...) reach it.
start_gateway() {
    local port=$1 log=$2
    shift 2
    .build/debug/prefab-gateway serve --host 127.0.0.1 --port "$port" "$@" >"$log" 2>&1 &
    gateway_pid=$!
    gateway_pids+=("$gateway_pid")
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null && return 0
        kill -0 "$gateway_pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 50 "$log"
    echo "$script: the gateway on port $port did not start"
    return 1
}

# stop_gateways: stops every gateway start_gateway started and waits for each to exit.
stop_gateways() {
    local pid
    for pid in "${gateway_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
