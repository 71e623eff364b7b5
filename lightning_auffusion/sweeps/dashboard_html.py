"""The dashboard's HTML: one self-contained page (inline CSS, inline JS, SVG charts drawn here, media as data
URIs or relative links), readable from disk with no server."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MIME = {".png": "image/png", ".wav": "audio/wav", ".jpg": "image/jpeg", ".flac": "audio/flac", ".ogg": "audio/ogg"}
COMPACT_JPEG_QUALITY = 80  # --compact_media: images as JPEG at this quality, audio as Ogg Vorbis

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none}td.l,th.l{text-align:left}
.notice{background:#fff3cd;border:1px solid #e0c36b;padding:.5em;margin:.5em 0}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eee}
.media{display:flex;gap:10px;overflow-x:auto}.card{border:1px solid #ddd;padding:4px;min-width:340px;font-size:.8em}
.card img{width:340px;display:block;margin:2px 0}.failed{color:#b00}.swatch{display:inline-block;width:10px;height:10px}
"""

SCRIPT = """
window.dashboardErrors=[];window.addEventListener('error',function(e){window.dashboardErrors.push(String(e.message))});
function sortTable(th){var t=th.closest('table'),i=Array.from(th.parentNode.children).indexOf(th),
b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
rows.sort(function(x,y){var a=x.cells[i].dataset.v,c=y.cells[i].dataset.v,na=parseFloat(a),nc=parseFloat(c);
if(!isNaN(na)&&!isNaN(nc))return asc?na-nc:nc-na;if(isNaN(na)!==isNaN(nc))return isNaN(na)?1:-1;
return asc?String(a).localeCompare(c):String(c).localeCompare(a)});rows.forEach(function(r){b.appendChild(r)})}
document.addEventListener('DOMContentLoaded',function(){
document.querySelectorAll('th[data-sort]').forEach(function(th){th.addEventListener('click',function(){sortTable(th)})});
var audios=Array.from(document.querySelectorAll('audio')),status=document.getElementById('audio-status'),done=0;
function report(){var ok=audios.filter(function(a){return a.duration>0&&isFinite(a.duration)}).length;
status.textContent=ok+' / '+audios.length+' audio clips loaded';status.dataset.loaded=ok;status.dataset.total=audios.length;
document.body.dataset.errors=JSON.stringify(window.dashboardErrors)}
audios.forEach(function(a){a.addEventListener('loadedmetadata',report);a.addEventListener('error',function(){
window.dashboardErrors.push('audio failed: '+a.title);report()});a.load()});report()});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, kind: str = "{:.3g}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{100 * value:.1f}%" if kind == "pct" else kind.format(value)
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def short_param(value: Any) -> str:
    """Encoder lists by their names, other values as JSON."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return "+".join(str(v["name"]) for v in value)
    return fmt(value)


class MediaWriter:
    """Media for the page: ``embed`` as data URIs, or ``copy`` into ``<output>/media/`` with relative links.
    ``compact`` re-encodes them first (images as JPEG, audio as Ogg Vorbis: a page to commit or mail; the run
    folders keep the originals)."""

    def __init__(self, output: Path, mode: str, compact: bool = False) -> None:
        self.output, self.mode, self.compact, self.count = output, mode, compact, 0

    def __call__(self, path: Path, run_name: str) -> str:
        path = Path(path)
        data, suffix = compact_media(path) if self.compact else (path.read_bytes(), path.suffix.lower())
        mime = MIME.get(suffix, "application/octet-stream")
        if self.mode == "embed":
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        self.count += 1
        target = self.output / "media" / run_name / (path.stem + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target.relative_to(self.output).as_posix()


def compact_media(path: Path) -> tuple[bytes, str]:
    """(bytes, suffix) of a smaller copy of ``path``: PNG -> JPEG, WAV/FLAC -> Ogg Vorbis; anything else as it is."""
    buffer = io.BytesIO()
    suffix = path.suffix.lower()
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            image.convert("RGB").save(buffer, format="JPEG", quality=COMPACT_JPEG_QUALITY)
        return buffer.getvalue(), ".jpg"
    if suffix in (".wav", ".flac"):
        import soundfile as sf

        audio, rate = sf.read(str(path), dtype="float32")
        sf.write(buffer, audio, rate, format="OGG", subtype="VORBIS")
        return buffer.getvalue(), ".ogg"
    return path.read_bytes(), suffix


def bar_chart(title: str, bars: list[tuple[str, float, str]], refs: list[tuple[str, float, str]], kind: str) -> str:
    """A horizontal bar chart (SVG): one bar per run, dashed reference lines (published rows, ceilings)."""
    values = [v for _, v, _ in bars] + [v for _, v, _ in refs]
    if not values:
        return ""
    top = max(max(values), 1e-9) * 1.1
    width, left, row = 500, 230, 18  # left: room for a trial name of about 36 characters
    height = 34 + row * len(bars) + 14 * len(refs)
    scale = (width - left - 50) / top
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
        f'<text x="6" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    for i, (label, value, color) in enumerate(bars):
        y = 26 + i * row
        parts.append(
            f'<text x="{left - 4}" y="{y + 12}" font-size="10" text-anchor="end">{esc(label[:36])}</text>'
            f'<rect x="{left}" y="{y}" width="{max(value, 0) * scale:.1f}" height="{row - 4}" fill="{color}"/>'
            f'<text x="{left + max(value, 0) * scale + 3:.1f}" y="{y + 12}" font-size="10">{esc(fmt(value, kind))}</text>'
        )
    base = 26 + row * len(bars)
    for j, (label, value, color) in enumerate(refs):
        x = left + value * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="22" x2="{x:.1f}" y2="{base}" stroke="{color}" stroke-dasharray="4,3"/>'
            f'<text x="{left}" y="{base + 11 + 14 * j}" font-size="10" fill="{color}">- - {esc(label)}: '
            f"{esc(fmt(value, kind))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, series: list[tuple[str, str, list[tuple[int, float]]]]) -> str:
    """Curves over steps (SVG), one polyline per run."""
    points = [p for _, _, s in series for p in s]
    if not points:
        return ""
    width, height, pad = 420, 220, 40
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)

    def xy(step: int, value: float) -> str:
        return (
            f"{pad + (step - x0) / (x1 - x0) * (width - pad - 10):.1f},"
            f"{height - pad + 10 - (value - y0) / (y1 - y0) * (height - pad - 20):.1f}"
        )

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
        f'<text x="6" y="14" font-size="13" font-weight="bold">{esc(title)}</text>',
        f'<text x="{pad}" y="{height - 12}" font-size="10">step {x0}</text>',
        f'<text x="{width - 10}" y="{height - 12}" font-size="10" text-anchor="end">{x1}</text>',
        f'<text x="2" y="30" font-size="10">{esc(fmt(y1))}</text>',
        f'<text x="2" y="{height - pad + 10}" font-size="10">{esc(fmt(y0))}</text>',
    ]
    for label, color, pts in series:
        if len(pts) == 1:
            cx, cy = xy(*pts[0]).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"><title>{esc(label)}</title></circle>')
        elif pts:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                f'points="{" ".join(xy(s, v) for s, v in pts)}"><title>{esc(label)}</title></polyline>'
            )
    parts.append("</svg>")
    return "".join(parts)


def heat_cell(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return '<td data-v="">n/a</td>'
    hue = 120 * max(0.0, min(1.0, float(value)))
    return f'<td data-v="{value}" style="background:hsl({hue:.0f},70%,80%)">{100 * value:.1f}%</td>'


def table(headers: list[tuple[str, bool]], rows: list[list[tuple[str, Any, bool]]], table_id: str) -> str:
    """A sortable table: headers (title, left-aligned); cells (shown html, sort value, left-aligned)."""
    head = "".join(f'<th data-sort="1" class="{"l" if left else ""}">{esc(t)}</th>' for t, left in headers)
    body = "".join(
        "<tr>"
        + "".join(
            c if c.startswith("<td") else f'<td class="{"l" if left else ""}" data-v="{esc(v)}">{c}</td>'
            for c, v, left in row
        )
        + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def page(title: str, sections: list[tuple[str, str]], notices: list[str]) -> str:
    body = "".join(f'<div class="notice">{esc(n)}</div>' for n in notices)
    body += "".join(
        f'<h2 id="{esc(sid)}">{esc(sid.replace("-", " ").capitalize())}</h2>{content}'
        for sid, content in sections
        if content
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body><h1>{esc(title)}</h1>"
        f'<p id="audio-status">audio not checked yet</p>{body}</body></html>\n'
    )


def media_section(prompts: dict[str, list[tuple[str, str, dict]]], link: Callable[[Path, str], str]) -> str:
    """Per prompt, one card per run: spectrogram, attention map, audio player."""
    out = []
    for prompt, cards in prompts.items():
        items = []
        for run_name, color, item in cards:
            parts = [
                f'<div class="card"><span class="swatch" style="background:{color}"></span> <b>{esc(run_name)}</b>'
            ]
            if item.get("png"):
                parts.append(f'<img alt="spectrogram {esc(run_name)}" src="{link(item["png"], run_name)}">')
            if item.get("attention"):
                parts.append(f'<img alt="attention {esc(run_name)}" src="{link(item["attention"], run_name)}">')
            parts.append(
                f'<audio controls preload="metadata" title="{esc(run_name)}: {esc(prompt)}" '
                f'src="{link(item["wav"], run_name)}"></audio></div>'
            )
            items.append("".join(parts))
        out.append(f'<h3>{esc(prompt)}</h3><div class="media">{"".join(items)}</div>')
    return "".join(out)
