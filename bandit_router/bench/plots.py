"""PNG plots for the benchmark results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bandit_router.offline import scores as M  # noqa: E402


def quality_cost_plot(result: dict[str, Any], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for rep in result["policies"]:
        hull = M.monotone_hull([M.CurvePoint(**p) for p in rep["curve"]])
        ax.plot(hull[:, 0], hull[:, 1], marker=".", label=rep["policy"])
    for name, p in result["single_models"].items():
        ax.scatter(p["cost"], p["quality"], color="grey", s=14)
        ax.annotate(name[:24], (p["cost"], p["quality"]), fontsize=6, color="grey")
    for key, marker in (("random", "x"), ("oracle", "*")):
        p = result[key]
        ax.scatter(p["cost"], p["quality"], marker=marker, s=80, color="black", label=key)
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per query (USD, log scale)")
    ax.set_ylabel("mean quality on test prompts")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def online_reward_plot(rewards: dict[str, list[float]], path: Path, window: int = 200) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in rewards.items():
        arr = np.asarray(r, dtype=float)
        if len(arr) >= window:
            smooth = np.convolve(arr, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(window, len(arr) + 1), smooth, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel(f"reward (moving mean over {window} rounds)")
    ax.set_title("online reward: cold vs warm start")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pgr_plot(preds: dict[str, np.ndarray], data: Any, strong: int, path: Path) -> None:
    te = data.test
    shares = np.linspace(0, 1, 51)
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, pred in preds.items():
        curve = M.routing_curve_two_models(
            pred[:, strong] - pred[:, 1 - strong],
            data.scores[te, strong],
            data.scores[te, 1 - strong],
            shares,
        )
        ax.plot(curve.share * 100, curve.pgr, label=name)
    ax.plot([0, 100], [0, 1], "k--", label="random")
    ax.set_xlabel("% calls to the strong model")
    ax.set_ylabel("PGR")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replay_plots(
    result: dict[str, Any],
    rewards: dict[str, list[float]],
    out: Path,
    preds: dict[str, np.ndarray] | None,
    data: Any,
) -> None:
    quality_cost_plot(result, out / "quality_cost.png", Path(result["data"]["gold"]).name)
    online_reward_plot(rewards, out / "online_reward.png")
    if preds is not None:
        strong = result["data"]["models"].index(result["strong_model"])
        pgr_plot(preds, data, strong, out / "pgr.png")


def loop_plot(result: dict[str, Any], path: Path) -> None:
    """Value at the online λ over rounds, one panel per judge (seed means)."""
    summary = result["summary"]
    curves = summary["curves_at_online_lambda"]
    judges = result["options"]["judges"]
    lam = result["options"]["online_lambda"]
    fig, axes = plt.subplots(1, len(judges), figsize=(5.5 * len(judges), 4.2), squeeze=False)
    for ax, judge in zip(axes[0], judges, strict=True):
        for name, curve in curves.items():
            parts = name.split("/")
            if len(parts) > 1 and parts[1] != judge:
                continue
            rounds = sorted(curve, key=int)
            style = "--" if len(parts) == 1 else "-"
            ax.plot([int(t) for t in rounds], [curve[t] for t in rounds], style, label=name)
        for cname, value in summary["constants"].items():
            ax.axhline(value[f"{lam:g}"], color="grey", lw=0.8, ls=":")
            ax.annotate(cname, (0, value[f"{lam:g}"]), fontsize=7, color="grey")
        ax.set_title(f"judge: {judge}")
        ax.set_xlabel("round")
        ax.set_ylabel(f"test value at λ = {lam:g}")
        ax.legend(fontsize=7)
    fig.suptitle(Path(result["data"]["gold"]).name + f" ({result['options']['seeds']} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
