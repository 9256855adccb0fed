#!/usr/bin/env python3
"""Stops a process for a while, again and again: a stand-in for a virtual machine's host taking
its CPUs (steal), but the same stalls in every run, so that two builds of the gateway can be
compared under them (docs/performance.md, the 5,000-ticker row).

Usage: python3 bench/stalls.py PID [--stall-ms 30] [--every-ms 200-400] [--seconds 11] [--seed 7]
Each stall is SIGSTOP, a sleep, SIGCONT; the gaps between stalls are drawn from a seeded generator."""
import argparse
import os
import random
import signal
import sys
import time


def main():
    options = argparse.ArgumentParser()
    options.add_argument("pid", type=int)
    options.add_argument("--stall-ms", type=float, default=30)
    options.add_argument("--every-ms", default="200-400", help="the gap between stalls: LOW-HIGH ms")
    options.add_argument("--seconds", type=float, default=11)
    options.add_argument("--seed", type=int, default=7)
    arguments = options.parse_args()
    low, high = (float(part) / 1000 for part in arguments.every_ms.split("-"))
    rng = random.Random(arguments.seed)
    end = time.monotonic() + arguments.seconds
    stalls = 0
    while time.monotonic() < end:
        time.sleep(rng.uniform(low, high))
        try:
            os.kill(arguments.pid, signal.SIGSTOP)
            try:
                time.sleep(arguments.stall_ms / 1000)
            finally:
                os.kill(arguments.pid, signal.SIGCONT)
        except ProcessLookupError:
            break
        stalls += 1
    print(f"{stalls} stalls of {arguments.stall_ms:g} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
