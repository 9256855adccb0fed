#!/usr/bin/env bash
# The benchmark: gateway vs the FastAPI peer, every scenario on one long-lived gateway, one table
# with targets and verdicts, and a chart (bench/results.png). See bench/run.py --help.
#   bash bench/run.sh                          full run
#   bash bench/run.sh --markdown t.md --json r.json   also docs/performance.md's table and every figure
#   bash bench/run.sh --smoke                  every scenario tiny: checks that the benchmark still works
exec python3 "$(dirname "$0")/run.py" "$@"
