#!/usr/bin/env python3
"""Draws bench/run.py's results as a PNG: every target's figure over its target (log axis; 1 is
the target, right of it is met), the ticker scenarios' peak RSS per stream count against the RSS
targets, and the gateway's RSS after each scenario of the run (a leak shows as a climb).

Usage (run.py calls it; bench/.venv has matplotlib): bench/.venv/bin/python bench/chart.py RESULTS.json OUT.png
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

MET, MISSED, NEUTRAL = "#2e8b57", "#c0392b", "#7f8c8d"


def score(check):
    """How far a figure is past its target: >= 1 is met, whichever direction is better."""
    value, target = check["value"], check["target"]
    if check["better"] == "higher":
        return value / target
    return target / value if value > 0 else float("inf")


def short(value):
    if value >= 100_000:
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def targets_panel(axis, rows):
    bars = []
    for row in rows:
        for check in row["checks"]:
            if check["chart"] and check["value"] is not None:
                bars.append((f"{row['short']}: {check['name']}", check))
    bars.reverse()  # the table's order, top to bottom
    scores = [min(max(score(check), 1e-3), 1e3) for _, check in bars]
    axis.barh(range(len(bars)), scores, color=[MET if check["met"] else MISSED for _, check in bars])
    axis.set_xscale("log")
    axis.axvline(1.0, color="black", linewidth=1)
    axis.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=8)
    for position, (s, (_, check)) in enumerate(zip(scores, bars)):
        sign = "≥" if check["better"] == "higher" else "≤"
        text = f"{short(check['value'])} {check['unit']} (target {sign} {short(check['target'])})"
        axis.text(s * 1.08, position, text, va="center", fontsize=7)
    low, high = min(scores + [0.5]), max(scores + [2.0])
    axis.set_xlim(low / 1.5, high * 6)
    axis.set_xlabel("figure over its target (log; right of the line: met)")
    axis.set_title("Targets: green met, red missed", fontsize=10)


def tickers_panel(axis, results):
    functions, size = results.get("ticker_functions", []), results["size"]
    nominal = [1000, 5000, 10000]
    width = 0.8 / max(len(functions), 1)
    for index, function in enumerate(functions):
        peaks = []
        for count in nominal:
            figures = results["scenarios"].get(f"{function}{count}", {}).get("gateway") or {}
            peaks.append(figures.get("peak_rss_mb", 0.0))
        positions = [i + (index - (len(functions) - 1) / 2) * width for i in range(len(nominal))]
        axis.bar(positions, peaks, width, label=f"`{function}` peak RSS")
        for x, peak in zip(positions, peaks):
            axis.text(x, peak, f"{peak:.0f}", ha="center", va="bottom", fontsize=7)
    targets = {1: 200, 2: 400}
    for i, target in targets.items():
        axis.hlines(target, i - 0.45, i + 0.45, colors=MISSED, linestyles="dashed", zorder=3)
        axis.text(i + 0.45, target, f" target {target} MB", va="center", fontsize=7, color=MISSED, zorder=3)
    idle = results["scenarios"].get("idle", {}).get("gateway") or {}
    if idle:
        axis.axhline(idle.get("after_calls_mb", 0), color=NEUTRAL, linewidth=0.8)
        axis.text(-0.45, idle.get("after_calls_mb", 0), " idle", va="bottom", fontsize=7, color=NEUTRAL)
    actual = dict(zip(nominal, size["tickers"]))
    axis.set_xticks(range(len(nominal)), [f"{actual[n]:,} tickers" for n in nominal])
    axis.set_ylabel("MB")
    axis.set_title("Ticker scenarios: the gateway's peak RSS", fontsize=10)
    if functions:
        axis.legend(fontsize=7, loc="upper left")


def timeline_panel(axis, results):
    timeline = results["timeline"].get("gateway", [])
    labels = [entry["after"] for entry in timeline]
    own = [entry["rss_mb"] for entry in timeline]
    total = [entry["rss_mb"] + entry.get("children_mb", 0) for entry in timeline]
    axis.plot(range(len(timeline)), own, marker="o", label="gateway process")
    if any(t != o for t, o in zip(total, own)):
        axis.plot(range(len(timeline)), total, marker=".", linestyle="dashed", label="with its child processes")
    axis.set_xticks(range(len(timeline)), labels, rotation=40, ha="right", fontsize=7)
    axis.set_ylim(bottom=0)
    axis.set_ylabel("MB")
    fresh = " (a fresh gateway per scenario: each point is its own)" if results.get("fresh") else ""
    axis.set_title(f"The gateway's RSS after each scenario{fresh}", fontsize=10)
    axis.legend(fontsize=7, loc="upper left")


def main():
    results = json.loads(pathlib.Path(sys.argv[1]).read_text())
    meta = results["meta"]
    figure = plt.figure(figsize=(11, 12), layout="constrained")
    grid = figure.add_gridspec(3, 2, height_ratios=[3.2, 1.6, 1.6])
    targets_panel(figure.add_subplot(grid[0, :]), results["rows"])
    tickers_panel(figure.add_subplot(grid[1, 0]), results)
    timeline_panel(figure.add_subplot(grid[1:, 1]), results)
    notes = figure.add_subplot(grid[2, 0])
    notes.axis("off")
    judged = [row for row in results["rows"] if row["met"] is not None]
    text = [f"{meta['date']}, commit {meta['commit']}", meta["mode"], f"{meta['cpus']} CPUs, load average "
            f"{meta['load_average_start']:.1f} at the start, {meta['load_average_max']:.1f} at most",
            f"rows meeting their targets: {sum(1 for row in judged if row['met'])} of {len(judged)}"]
    text += [f"missed: {row['key']} ({row['verdict']})" for row in judged if not row["met"]]
    notes.text(0, 1, "\n".join(text), va="top", fontsize=8, family="monospace", wrap=True)
    figure.suptitle("Prefab Gateway benchmark (bench/run.sh)", fontsize=12)
    figure.savefig(sys.argv[2], dpi=90)


if __name__ == "__main__":
    main()
