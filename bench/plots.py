"""PNG plots: a summary grid (servers x scenarios, lost + races per cell); per group of runs,
a timeline per server around the signal; over all runs, lost and keep-alive race failures
per server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import groups, summary_cells

COLORS = {"ok": "#4caf50", "refused": "#9e9e9e", "keepalive_race": "#ff9800",
          "lost": "#d32f2f", "5xx": "#7b1fa2", "timeout": "#1976d2"}


def timelines(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """One PNG per (scenario, connections, signal): a panel per server, its first run."""
    paths = []
    for (scenario, conns, sig), servers in groups(results).items():
        names = list(servers)
        fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.9 * len(names) + 0.6),
                                 sharex=True, squeeze=False)
        for ax, name in zip(axes[:, 0], names, strict=True):
            _panel(ax, name, servers[name][0])
        axes[-1, 0].set_xlabel("seconds since the signal")
        fig.suptitle(f"{scenario}, {conns} connections, {sig}: in flight (line), "
                     "outcomes per 20 ms (bars)", fontsize=10)
        fig.tight_layout()
        path = out / f"timeline-{scenario}-c{conns}-{sig}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def _panel(ax: Any, name: str, run: dict[str, Any]) -> None:
    tl = run["timeline"]
    t = [tl["t0"] + i * tl["bin_s"] for i in range(len(tl["in_flight"]))]
    ax.plot(t, tl["in_flight"], color="black", linewidth=1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    bars = ax.twinx()
    bottom = [0] * len(t)
    refused = tl["ends"]["refused"]
    if any(refused):  # retries every 20 ms per client: a line, not to drown the bars
        bars.step(t, refused, where="post", color=COLORS["refused"], linewidth=0.8,
                  label="refused")
    for outcome, color in COLORS.items():
        counts = tl["ends"][outcome]
        if outcome == "refused":
            continue
        if any(counts):
            bars.bar(t, counts, width=tl["bin_s"], bottom=bottom, color=color, alpha=0.7,
                     align="edge", label=outcome)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    bars.set_ylim(bottom=0)
    bars.tick_params(labelsize=7)
    ax.tick_params(labelsize=7)
    ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
    ax.axvline(run["drain_s"], color="red", linewidth=0.8)
    if run["listener_closed_s"] is not None:
        ax.axvline(run["listener_closed_s"], color="gray", linestyle=":", linewidth=0.8)
    c = run["counts"]
    ax.set_title(f"lost={run['lost']} race={run['race']} refused={c['refused']} "
                 f"5xx={c['5xx']} timeout={c['timeout']} exit={run['exit_code']} "
                 f"drain={run['drain_s']:.2f}s", fontsize=7, loc="right")
    handles, labels = bars.get_legend_handles_labels()
    if handles:
        bars.legend(handles, labels, fontsize=6, loc="upper left", ncol=len(labels))


def loss_bars(results: list[dict[str, Any]], out: Path) -> Path:
    """Lost and race failures per server, summed over its runs, one bar group per scenario."""
    keys = list(groups(results))
    servers: list[str] = []
    for r in results:
        if r["server"] not in servers:
            servers.append(r["server"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(keys) * len(servers) / 3 + 3),
                             squeeze=False)
    width = 0.8 / max(len(servers), 1)
    for ax, field, title in ((axes[0, 0], "lost", "lost"), (axes[0, 1], "race",
                                                             "keep-alive race")):
        for i, server in enumerate(servers):
            values = [sum(r[field] for r in groups(results)[k].get(server, [])) for k in keys]
            ax.barh([k + i * width for k in range(len(keys))], values, height=width,
                    label=server)
        ax.set_yticks([k + 0.4 - width / 2 for k in range(len(keys))])
        ax.set_yticklabels([f"{s} c={c} {g}" for s, c, g in keys], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{title} (sum over runs)", fontsize=10)
        ax.tick_params(labelsize=7)
    axes[0, 1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "loss-by-server.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def summary_grid(results: list[dict[str, Any]], out: Path) -> Path:
    """Servers x (scenario, connections, signal): each cell coloured by lost + races over
    its runs (green only at zero) and labelled `lost + races`, so a zero reads as a zero."""
    servers, keys, cells = summary_cells(results)
    worst = max([lost + race for lost, race in cells.values()] or [0])
    fig, ax = plt.subplots(figsize=(1.25 * len(keys) + 2.6, 0.5 * len(servers) + 1.6))
    cmap = plt.get_cmap("YlOrRd")
    for row, server in enumerate(servers):
        for col, key in enumerate(keys):
            cell = cells.get((server, key))
            ink = "black"
            if cell is None:
                color, label = "#eeeeee", "-"
            else:
                total = cell[0] + cell[1]
                shade = 0.35 + 0.65 * total / worst if total else 0.0
                color = COLORS["ok"] if total == 0 else cmap(shade)
                ink = "white" if shade > 0.75 else "black"
                label = f"{cell[0]} + {cell[1]}"
            ax.add_patch(plt.Rectangle((col, row), 1, 1, facecolor=color, edgecolor="white",
                                       linewidth=2))
            ax.text(col + 0.5, row + 0.5, label, ha="center", va="center", fontsize=8, color=ink,
                    fontweight="bold" if cell and sum(cell) else "normal")
    ax.set_xlim(0, len(keys))
    ax.set_ylim(len(servers), 0)
    ax.set_xticks([c + 0.5 for c in range(len(keys))])
    ax.set_xticklabels([f"{s}\nc={c} {g}" for s, c, g in keys], fontsize=7)
    ax.set_yticks([r + 0.5 for r in range(len(servers))])
    ax.set_yticklabels(servers, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title("lost + keep-alive races per cell, summed over its runs (green: none; "
                 "-: not run)", fontsize=10)
    fig.tight_layout()
    path = out / "summary.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
