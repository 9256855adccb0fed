#!/usr/bin/env bash
# Drives `prefab-gateway invoke` in a real terminal (tmux) against the real gateway: a moving
# progress bar, the wizard answered at its prompt, Ctrl-C cancelling on the server; and piped:
# --json lines, exit statuses, --download. Stops everything it started, even on failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
command -v tmux >/dev/null || { as_root apt-get update -qq && as_root apt-get install -y -qq tmux >/dev/null; }

port=$(free_port)
work=$(mktemp -d)
session=prefab-cli-$$
# A private tmux server kept up by an idle session: killing the last session stops a tmux server,
# and a new-session that connects while it stops fails with "server exited unexpectedly" (a
# fresh-clone CI run failed so between two windows).
socket=$work/tmux.sock
tmux() { command tmux -S "$socket" "$@"; }
export -f tmux
export socket
trap 'tmux kill-server 2>/dev/null || true; stop_gateways; rm -rf "$work"' EXIT
tmux new-session -d -s keeper "sleep 100000"
build_gateway
binary=$(pwd)/.build/debug/prefab-gateway
start_gateway "$port" "$work/gateway.log" --data "$work/data"
export PREFAB_GATEWAY_URL="http://127.0.0.1:$port"
check_ok=1
# run_in_terminal COMMAND: runs it in a fresh 100x30 tmux window; the pane shows EXIT=<status> at the end.
run_in_terminal() {
    tmux kill-session -t "$session" 2>/dev/null || true
    tmux new-session -d -s "$session" -x 100 -y 30 "PREFAB_GATEWAY_URL=$PREFAB_GATEWAY_URL $1; echo EXIT=\$?; sleep 60"
}
pane() { tmux capture-pane -p -t "$session"; }
# wait_for TEXT [SECONDS]: until the pane shows TEXT.
wait_for() {
    for _ in $(seq 1 $((${2:-20} * 10))); do pane | grep -qF -- "$1" && return 0; sleep 0.1; done
    echo "--- pane, waiting for '$1':"; pane; return 1
}

echo "== a moving progress bar"
run_in_terminal "$binary invoke batch_process -i 'items=[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\"]' -i delay_ms=250"
: >"$work/bars"
for _ in $(seq 1 60); do
    pane | grep -o '\] *[0-9]*%' >>"$work/bars" || true
    pane | grep -q 'EXIT=' && break
    sleep 0.1
done
distinct=$(tr -d '] %' <"$work/bars" | sort -un | tr '\n' ' ')
echo "percentages seen on the bar: $distinct"
check "the bar moved through at least four percentages" test "$(wc -w <<<"$distinct")" -ge 4
check "the bar is redrawn in place (one bar line on screen)" test "$(pane | grep -c '\] *[0-9]*%' || true)" -le 1
check "the run ends with done and exit status 0" bash -c "tmux capture-pane -p -t $session | grep -q 'done' && tmux capture-pane -p -t $session | grep -q 'EXIT=0'"

for function in wizard wizard_py; do
    echo "== $function answered at the prompt"
    run_in_terminal "$binary invoke $function"
    wait_for "What is the project called?"
    tmux send-keys -t "$session" "demo" Enter
    wait_for "Which template for demo?"
    check "$function shows the options numbered" bash -c "tmux capture-pane -p -t $session | grep -q '2) web'"
    tmux send-keys -t "$session" "4" Enter
    wait_for "choose a number from 1 to 3"
    tmux send-keys -t "$session" "2" Enter
    wait_for "EXIT=" 20
    check "$function ends with done carrying both answers" \
        bash -c "tmux capture-pane -p -t $session | grep -qF 'done {\"name\":\"demo\",\"template\":\"web\"}'"
    check "$function exits 0" bash -c "tmux capture-pane -p -t $session | grep -q 'EXIT=0'"
done

echo "== Ctrl-C cancels on the server"
run_in_terminal "$binary invoke batch_process -i 'items=[1,2,3,4,5,6,7,8,9,10]' -i delay_ms=1000"
wait_for "1/10"
tmux send-keys -t "$session" C-c
wait_for "EXIT=" 20
pane
id=$(pane | grep -o 'cancelling [0-9a-f]*' | cut -d' ' -f2 || true)
check "Ctrl-C prints the cancelled invocation and exits 130" bash -c "tmux capture-pane -p -t $session | grep -q 'EXIT=130'"
check "the invocation is cancelled on the server" \
    grep -q '"state":"cancelled"' <<<"$(curl -s "http://127.0.0.1:$port/invocations/$id")"

echo "== piped: --json lines, plain lines, exit statuses, --download"
"$binary" invoke batch_process -i 'items=["a","b","c"]' -i delay_ms=0 --json >"$work/events.jsonl"
check "--json prints one JSON event per line" python3 -c '
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
assert [e["type"] for e in events] == ["start", "progress", "progress", "progress", "done"], events
assert events[0]["invocation_id"]' "$work/events.jsonl"
"$binary" invoke batch_process -i 'items=["a"]' -i delay_ms=0 >"$work/plain.txt"
check "piped output has no bar or escape codes" bash -c "! grep -q \$'\\e' $work/plain.txt && grep -q '^progress 100% 1/1' $work/plain.txt"
status=0
"$binary" invoke fail_midway >/dev/null 2>"$work/failed.txt" || status=$?
check "a failing function exits 1 and shows its error code" bash -c "[ $status = 1 ] && grep -q 'STEP_FAILED' $work/failed.txt"
status=0
"$binary" invoke echo >/dev/null 2>"$work/refused.txt" || status=$?
check "a refused call exits 2 and names the missing input" bash -c "[ $status = 2 ] && grep -q 'INVALID_INPUTS' $work/refused.txt && grep -q 'text: is required' $work/refused.txt"
"$binary" invoke report -i rows=3 --download "$work/files" >/dev/null
check "--download saves the output files" bash -c "head -1 $work/files/report.csv | grep -q '^month,units,revenue' && test -s $work/files/report.md"
printf 'demo\n3\n' | "$binary" invoke wizard --answer template=cli >"$work/piped-wizard.txt" 2>&1 || true
check "answers given with --answer are used, the rest read from stdin" \
    grep -qF 'done {"name":"demo","template":"cli"}' "$work/piped-wizard.txt"

checks_summary || { tail -20 "$work/gateway.log"; exit 1; }
