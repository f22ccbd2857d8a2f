"""Server-rendered SVG charts: no JavaScript, no CDN, works offline and in any browser.

Every label passes through XML escaping; the output is a complete <svg> element
that pages embed inline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

# Colour-blind-safe palette (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _as_datetime(value: date) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)


def _label(value: datetime, step: timedelta) -> str:
    return value.strftime("%Y-%m-%d %H:00") if step < timedelta(days=1) else value.date().isoformat()


def line_chart(series: Mapping[str, Sequence[tuple[date, int]]], *, title: str, width: int = 640, height: int = 240,
               empty_text: str = "no data yet", step: timedelta = timedelta(days=1)) -> Markup:
    """Posts per bucket (a day, or an hour with step=1 h), one line per series, sharing the
    x axis; buckets without posts count 0."""
    pad_l, pad_r, pad_t, pad_b = 40, 12, 24, 60
    lines: dict[str, list[tuple[datetime, int]]] = {name: [(_as_datetime(d), c) for d, c in points] for name, points in series.items()}
    days = sorted({d for points in lines.values() for d, _ in points})
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" aria-label={quoteattr(title)}><title>{escape(title)}</title>')
    if not days:
        return Markup(head + f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" fill="#666">{escape(empty_text)}</text></svg>')
    start, end = days[0], days[-1]
    buckets = int((end - start) / step)
    span = max(buckets, 1)
    all_days = [start + step * i for i in range(buckets + 1)]
    peak = max((c for points in lines.values() for _, c in points), default=1) or 1
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(d: datetime) -> float:
        return pad_l + plot_w * ((d - start) / step) / span

    def y(c: int) -> float:
        return pad_t + plot_h * (1 - c / peak)

    parts = [head]
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - pad_r}" y2="{pad_t + plot_h}" stroke="#999"/>')
    parts.append(f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + plot_h}" stroke="#999"/>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end" font-size="10" fill="#444">{peak}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + plot_h}" text-anchor="end" font-size="10" fill="#444">0</text>')
    parts.append(f'<text x="{pad_l}" y="{pad_t + plot_h + 14}" font-size="10" fill="#444">{_label(start, step)}</text>')
    parts.append(f'<text x="{width - pad_r}" y="{pad_t + plot_h + 14}" text-anchor="end" font-size="10" fill="#444">{_label(end, step)}</text>')
    for n, (name, points) in enumerate(lines.items()):
        colour = PALETTE[n % len(PALETTE)]
        counts = dict(points)
        coords = " ".join(f"{x(d):.1f},{y(counts.get(d, 0)):.1f}" for d in all_days)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"><title>{escape(name)}</title></polyline>')
        for d in all_days:
            if counts.get(d):
                parts.append(f'<circle cx="{x(d):.1f}" cy="{y(counts[d]):.1f}" r="2.5" fill="{colour}"><title>{escape(name)}: {counts[d]} ({_label(d, step)})</title></circle>')
        # legend rows under the axis
        ly = pad_t + plot_h + 28 + 12 * (n // 2)
        lx = pad_l + (n % 2) * (plot_w // 2)
        parts.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly}" font-size="10" fill="#222">{escape(name[:60])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
