"""The benchmark's picture: client latency over time, the deploy's steps as bands.

One panel per arm that ran with clients: every client request as a dot (its start,
its latency, log scale), the worst of each half second as a line, and the arm's
steps as shaded bands with their names. Needs matplotlib (the ``bench`` extra of
pyproject.toml); without it the benchmark draws nothing and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Band:
    label: str
    start: float  # seconds from the deploy's start
    end: float


@dataclass(frozen=True)
class Panel:
    title: str
    wall_s: float
    points: list[tuple[float, float, str]]  # (start s from the deploy's start, ms, kind)
    bands: list[Band]


COLORS = {
    "read": "tab:blue",
    "send": "tab:orange",
    "reset": "tab:green",
    "mark_read": "tab:purple",
    "create": "tab:red",
}
BAND_COLORS = ("#cfe2f3", "#fde9c9", "#d9ead3", "#ead1dc", "#fff2cc", "#d0e0e3")


def available() -> str | None:
    """None when matplotlib can be imported, else why not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    return None


def draw(panels: list[Panel], title: str, path: Path, limit_ms: float = 100.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(panels), 1, figsize=(12, 3.4 * len(panels)), squeeze=False, sharey=True
    )
    for ax, panel in zip((row[0] for row in axes), panels, strict=True):
        for n, band in enumerate(panel.bands):
            ax.axvspan(band.start, max(band.end, band.start + 0.05), alpha=0.6, lw=0,
                       color=BAND_COLORS[n % len(BAND_COLORS)])  # fmt: skip
            if band.end - band.start >= panel.wall_s * 0.04:
                ax.text((band.start + band.end) / 2, 0.985, band.label, rotation=90, va="top",
                        ha="center", fontsize=6, transform=ax.get_xaxis_transform())  # fmt: skip
        for kind, color in COLORS.items():
            xs = [x for x, _, k in panel.points if k == kind]
            ys = [y for _, y, k in panel.points if k == kind]
            if xs:
                ax.scatter(xs, ys, s=1.5, color=color, label=kind, alpha=0.5, lw=0,
                           rasterized=True)  # fmt: skip
        worst: dict[int, float] = {}
        for x, y, _ in panel.points:
            worst[int(x * 2)] = max(worst.get(int(x * 2), 0.0), y)
        if worst:
            keys = sorted(worst)
            ax.plot([k / 2 for k in keys], [worst[k] for k in keys], color="black", lw=0.6,
                    label="worst per 0.5 s")  # fmt: skip
        ax.axhline(limit_ms, color="red", lw=0.8, ls="--", label=f"{limit_ms:g} ms")
        ax.axvline(0, color="grey", lw=0.8)
        ax.axvline(panel.wall_s, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("client request (ms)")
        ax.set_title(panel.title, fontsize=9, loc="left")
        ax.legend(loc="upper right", fontsize=6, markerscale=4, ncol=7)
    axes[-1][0].set_xlabel("seconds from the deploy's start")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
