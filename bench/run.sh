#!/usr/bin/env bash
# The benchmark: gateway vs the FastAPI peer, every scenario, one table. See bench/run.py --help.
#   bash bench/run.sh            full run (about 10 minutes)
#   bash bench/run.sh --smoke    every scenario tiny: checks that the benchmark still works
exec python3 "$(dirname "$0")/run.py" "$@"
