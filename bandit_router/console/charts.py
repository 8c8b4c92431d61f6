"""Charts as inline SVG rendered on the server: no JavaScript library, nothing to download."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

W, H, PAD = 640, 200, 36
LEFT = 64  # room for y labels such as 0.00257
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _x(i: int, n: int) -> float:
    return LEFT + (W - LEFT - PAD) * (i / max(n - 1, 1))


def _slot(i: int, n: int) -> float:
    """The centre of the i-th of n columns (a single run sits in the middle, not on the axis)."""
    return LEFT + (W - LEFT - PAD) * ((i + 0.5) / n)


def _y(value: float, lo: float, hi: float) -> float:
    span = (hi - lo) or 1.0
    return H - PAD - (H - 2 * PAD) * ((value - lo) / span)


def _label(epoch: int, seconds: int) -> str:
    fmt = "%m-%d %H:%M" if seconds < 86400 else "%Y-%m-%d"
    return datetime.fromtimestamp(epoch, UTC).strftime(fmt)


def _frame(buckets: Sequence[int], seconds: int, lo: float, hi: float, fmt: str) -> list[str]:
    """Axes, the y range and the first and last time labels."""
    parts = [
        f'<line x1="{LEFT}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{H - PAD}" class="axis"/>',
        f'<text x="{LEFT - 4}" y="{H - PAD}" class="tick" text-anchor="end">{lo:{fmt}}</text>',
        f'<text x="{LEFT - 4}" y="{PAD + 4}" class="tick" text-anchor="end">{hi:{fmt}}</text>',
    ]
    if buckets:
        first, last = _label(buckets[0], seconds), _label(buckets[-1], seconds)
        parts.append(f'<text x="{LEFT}" y="{H - 12}" class="tick">{first}</text>')
        parts.append(
            f'<text x="{W - PAD}" y="{H - 12}" class="tick" text-anchor="end">{last}</text>'
        )
    return parts


def _svg(title: str, parts: list[str]) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg viewBox="0 0 {W} {H}" class="chart" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def lines(
    title: str,
    buckets: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    seconds: int,
    fmt: str = ".2f",
    fixed: tuple[float, float] | None = None,
) -> Markup:
    """One polyline per series over the buckets (gaps where a value is None)."""
    values = [v for s in series.values() for v in s if v is not None]
    if not values:
        return Markup('<p class="empty">no data in this window</p>')
    lo, hi = fixed or (min(0.0, min(values)), max(values))
    parts = _frame(buckets, seconds, lo, hi, fmt)
    for i, points in enumerate(series.values()):
        xy = [
            f"{_x(j, len(buckets)):.1f},{_y(v, lo, hi):.1f}"
            for j, v in enumerate(points)
            if v is not None
        ]
        stroke = color(i)
        parts.append(f'<polyline points="{" ".join(xy)}" fill="none" stroke="{stroke}"/>')
        parts.extend(
            f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{stroke}"/>'
            for p in xy
        )
    return _svg(title, parts)


def intervals(
    title: str, labels: Sequence[str], rows: Sequence[tuple[float, float, float] | None]
) -> Markup:
    """Point estimates with their intervals, one column per label (e.g. per retraining run)."""
    known = [r for r in rows if r is not None]
    if not known:
        return Markup('<p class="empty">no estimates yet</p>')
    lo = min(0.0, *(r[1] for r in known))
    hi = max(0.0, *(r[2] for r in known))
    parts = _frame([], 0, lo, hi, "+.2f")
    zero = _y(0.0, lo, hi)
    parts.append(f'<line x1="{LEFT}" y1="{zero:.1f}" x2="{W - PAD}" y2="{zero:.1f}" class="zero"/>')
    for j, row in enumerate(rows):
        x = _slot(j, len(rows))
        parts.append(
            f'<text x="{x:.1f}" y="{H - 12}" class="tick" text-anchor="middle">'
            f"{escape(labels[j])}</text>"
        )
        if row is not None:
            est, low, high = row
            parts.append(
                f'<line x1="{x:.1f}" y1="{_y(low, lo, hi):.1f}" x2="{x:.1f}" '
                f'y2="{_y(high, lo, hi):.1f}" class="ci"/>'
                f'<circle cx="{x:.1f}" cy="{_y(est, lo, hi):.1f}" r="3.5" class="est"/>'
            )
    return _svg(title, parts)
