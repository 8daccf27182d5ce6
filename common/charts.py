"""Small server-side SVG charts for the admin (no JavaScript, no CDN: the machine may have no
internet). Stacked bars, one per label, scaled to the tallest."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def stacked_bars_svg(
    bars: Sequence[tuple[str, Sequence[float]]],
    *,
    series: Sequence[tuple[str, str]],
    caption: str,
    width: int = 720,
    height: int = 160,
    label_every: int = 1,
) -> str:
    """``bars``: (label, one value per series); ``series``: (name, colour) bottom to top."""
    if not bars:
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20">'
        return svg + '<text y="15">no data yet</text></svg>'
    top = max(sum(values) for _, values in bars) or 1
    bar = min(24, max(2, (width - 40) // len(bars) - 2))
    legend = ", ".join(f"{name} ({colour})" for name, colour in series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" role="img">',
        f'<text x="0" y="12" font-size="11">{escape(caption)}: {escape(legend)}; max {top:g}</text>',
    ]
    base = height + 20
    for n, (label, values) in enumerate(bars):
        x, y = 20 + n * (bar + 2), base
        for (name, colour), value in zip(series, values, strict=True):
            h = round(value / top * height)
            y -= h
            parts.append(
                f'<rect x="{x}" y="{y}" width="{bar}" height="{h}" fill="{colour}">'
                f"<title>{escape(label)}: {value:g} {escape(name)}</title></rect>"
            )
        if n % label_every == 0:
            parts.append(f'<text x="{x}" y="{base + 10}" font-size="8">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
