#!/bin/sh
# Misbehaves as the called function asks; the call is the first line on stdin.
read -r call
function=$(printf '%s' "$call" | sed -n 's/.*"function":"\([a-z_0-9]*\)".*/\1/p')
# A hang prints nothing at all.
[ "$function" = sh_hang ] && exec sleep 3600
echo "{\"type\":\"start\",\"data\":{\"pid\":$$}}"
case "$function" in
sh_crash)
    echo '{"type":"content","data":"about to exit"}'
    exit 7
    ;;
sh_signal)
    echo '{"type":"content","data":"about to die"}'
    kill -KILL $$
    ;;
sh_flood)
    yes '{"type":"content","data":"x"}' | head -n 1000000
    echo '{"type":"done","data":{"count":1000000}}'
    ;;
sh_huge_line)
    head -c 100000000 /dev/zero | tr '\0' 'x'
    ;;
sh_ignore_term)
    trap '' TERM
    sh -c "trap '' TERM; while :; do sleep 0.05; done" &
    while :; do sleep 0.05; done
    ;;
sh_write_1gb)
    head -c 1073741824 /dev/zero >"$PREFAB_OUTPUT_DIR/big.bin"
    echo '{"type":"done","data":"wrote 1 GB"}'
    ;;
*)
    echo "{\"type\":\"error\",\"data\":\"unknown function '$function'\",\"error_code\":\"FUNCTION_NOT_FOUND\"}"
    ;;
esac
