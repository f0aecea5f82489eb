"""The ``report`` document as Markdown or as one self-contained HTML file.

The HTML needs nothing but itself: inline CSS (with a print style: an auditor prints it or
saves it as PDF), an inline SVG chart, no script, no font, image or link to fetch. Every
text that comes from the state (ids, reasons, names) is escaped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from forwarder.event import parse_ms

DAY_MS = 86_400_000
DASHES = ("", "6 3")
PALETTE = ("#1f5fa8", "#d9822b", "#2e8b57", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#b8860b")


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("OK" if flag else "FAILED")


def _delivered(stream: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for sink, d in sorted(stream["delivered"].items()):
        notes = [f"{d[k]} {k.replace('_', ' ')}" for k in ("dead_lettered", "not_confirmed", "not_sent") if d[k]]
        out.append((sink, f"{d['confirmed']} confirmed" + (f" ({', '.join(notes)})" if notes else "")))
    return out


def _reconcile_text(run: dict[str, Any] | None) -> str:
    if run is None:
        return "never run"
    s = run["summary"]
    return (
        f"{_ok(run['ok'])} at {run['at']}: {s.get('vendor_entries', '?')} vendor entries "
        f"{s.get('from', '?')} to {s.get('read_to', s.get('to', '?'))}, {s.get('missing', 0)} missing"
    )


def _facts(
    stream: dict[str, Any], esc: Callable[[Any], str], code: Callable[[str], str], sep: str
) -> list[tuple[str, str]]:
    """A stream's section as (label, value), for both renderings: ``esc`` escapes a value,
    ``code`` sets a hash apart, ``sep`` ends the sequence part of a chain line."""
    c = stream["chain"]
    if stream["first_time"] is None:  # a stream known to the ledger that collected nothing in the period
        collected, chain = f"{stream['events']} (none in the period)", "none in the period"
    else:
        collected = f"{stream['events']} ({esc(stream['first_time'])} to {esc(stream['last_time'])})"
        chain = f"seq {esc(c['first_seq'])} to {esc(c['last_seq'])}{sep} last hash {code(esc(c['last_hash']))}"
    return [
        ("Events collected", collected),
        ("Chain in the period", chain),
        ("Chain head now", f"seq {c['head_seq']}{sep} hash {code(esc(c['head_hash']))}"),
        *((f"Delivered to {esc(k)}", esc(v)) for k, v in _delivered(stream)),
        ("Last reconcile", esc(_reconcile_text(stream["last_reconcile"]))),
    ]


# --- Markdown ---------------------------------------------------------------------------------


def _md(value: Any) -> str:
    return str("-" if value is None else value).replace("|", "\\|").replace("\n", " ")


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"# {data['title']}",
        "",
        f"Period: **{data['from']}** to **{data['to']}** (event time, UTC). Generated {data['generated']}.",
        "",
    ]
    lines += [
        "## Summary",
        "",
        "| stream | events | gaps | quarantined | dead letters | delivered | last reconcile |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for s in data["streams"]:
        delivered = "; ".join(f"{k}: {v}" for k, v in _delivered(s))
        lines.append(
            f"| {_md(s['source'] + '/' + s['organization'])} | {s['events']} | {s['gap_events']} | "
            f"{s['quarantined']['count']} | {len(s['dead_letters'])} | {_md(delivered)} | "
            f"{_md(_reconcile_text(s['last_reconcile']))} |"
        )
    if not data["streams"]:
        lines.append("| (no events in the period) | | | | | | |")
    for s in data["streams"]:
        lines += ["", f"## {_md(s['source'])} / {_md(s['organization'])}", ""]
        lines += [f"- {label}: {value}" for label, value in _facts(s, _md, lambda h: f"`{h}`", ",")]
        if s["gaps"]:
            lines += [
                "",
                "| gap noticed | lost from | lost to | chain seq | reason |",
                "| --- | --- | --- | ---: | --- |",
            ]
            lines += [
                f"| {g['noticed']} | {_md(g['from'])} | {_md(g['to'])} | {g['chain_seq']} | {_md(g['reason'])} |"
                for g in s["gaps"]
            ]
        if s["quarantined"]["count"]:
            lines += ["", "| quarantined: reason | entries |", "| --- | ---: |"]
            lines += [f"| {_md(r)} | {n} |" for r, n in s["quarantined"]["reasons"].items()]
        if s["dead_letters"]:
            lines += ["", "| dead letter: sink | id | event time | reason |", "| --- | --- | --- | --- |"]
            lines += [
                f"| {_md(d['sink'])} | {_md(d['id'])} | {d['time']} | {_md(d['reason'])} |" for d in s["dead_letters"]
            ]
    lines += [
        "",
        "## Last verify and reconcile runs",
        "",
        "| kind | scope | at | result |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r['kind']} | {_md(r['scope'])} | {r['at']} | {_ok(r['ok'])} |" for r in data["runs"]]
    if not data["runs"]:
        lines.append("| (none recorded) | | | |")
    return "\n".join(lines) + "\n"


# --- HTML -------------------------------------------------------------------------------------

CSS = """
:root { --ink: #1b1f24; --muted: #5b6570; --line: #d5dbe1; --ok: #1e7b34; --bad: #b3261e; --band: #f4f6f8; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0 auto; padding: 32px 40px; max-width: 1180px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: var(--muted); margin: 0 0 20px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.time { white-space: nowrap; }
code, .hash { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
.ok { color: var(--ok); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
.stream { border: 1px solid var(--line); border-radius: 6px; padding: 4px 20px 8px; margin: 18px 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dt { color: var(--muted); } dd { margin: 0; }
figure { margin: 8px 0 16px; } figcaption { color: var(--muted); font-size: 13px; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: var(--muted); }
@media print {
  @page { size: A4; margin: 14mm; }
  body { padding: 0; max-width: none; font-size: 11pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .stream, figure, table { break-inside: avoid; }
  h2 { break-after: avoid; }
}
"""


def _days(data: dict[str, Any]) -> list[str]:
    start = datetime.fromtimestamp(parse_ms(data["from"]) // DAY_MS * DAY_MS / 1000, UTC)
    end_ms = parse_ms(data["to"]) - 1
    days: list[str] = []
    day = start
    while day.timestamp() * 1000 <= end_ms and len(days) < 3660:
        days.append(day.strftime("%Y-%m-%d"))
        day += timedelta(days=1)
    return days


def chart(data: dict[str, Any]) -> str:
    """Events per day per stream as lines, gaps as red bands over the time they lost."""
    days = _days(data)
    if not days:
        return ""
    width, height, left, right, top, bottom = 1080, 280, 56, 16, 16, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    peak: int = max([1, *(int(n) for s in data["streams"] for n in s["per_day"].values())])
    step = plot_w / len(days)  # a day is a column; its count is drawn at its middle

    def x(day: float) -> float:
        return float(left + day * step)

    def y(n: float) -> float:
        return top + plot_h - plot_h * n / peak

    out = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="events per day per organization">']
    first_ms = parse_ms(days[0] + "T00:00:00Z")
    for s in data["streams"]:  # gaps first, under the lines
        for g in s["gaps"]:
            lo = parse_ms(g["from"]) if g["from"] else parse_ms(g["noticed"])
            hi = parse_ms(g["to"]) if g["to"] else lo
            a = min(max((lo - first_ms) / DAY_MS, 0), len(days))
            b = min(max((hi - first_ms) / DAY_MS, 0), len(days))
            x0, x1 = x(a), max(x(b), x(a) + 3)
            out.append(
                f'<rect x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" height="{plot_h}" fill="#b3261e" '
                f'fill-opacity="0.15" stroke="#b3261e" stroke-dasharray="4 3"/>'
            )
            out.append(f'<text x="{x0 + 3:.1f}" y="{top + 12}" style="fill:#b3261e">gap</text>')
    for tick in (0, peak / 2, peak):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e3e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{round(tick)}</text>')
    every = max(1, len(days) // 12)
    for i, day in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            out.append(f'<text x="{x(i + 0.5):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{day[5:]}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#8a949e"/>')
    legend_x = left
    for k, s in enumerate(data["streams"]):
        color = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i + 0.5):.1f},{y(s['per_day'].get(d, 0)):.1f}" for i, d in enumerate(days))
        dash = DASHES[k // len(PALETTE) % len(DASHES)] if k < len(PALETTE) else "6 3"
        width_ = max(4.5 - 1.2 * k, 1.8)  # the first ones wider: equal series stay visible under each other
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="{width_:.1f}" '
            f'stroke-dasharray="{dash}" stroke-linejoin="round"/>'
        )
        if len(days) <= 62:
            out += [
                f'<circle cx="{x(i + 0.5):.1f}" cy="{y(s["per_day"].get(d, 0)):.1f}" r="3" fill="{color}"/>'
                for i, d in enumerate(days)
            ]
        label = escape(f"{s['source']}/{s['organization']}")
        out.append(f'<rect x="{legend_x}" y="{height - 18}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{legend_x + 16}" y="{height - 8}" style="fill:#1b1f24">{label}</text>')
        legend_x += 28 + 7 * len(label)
    out.append("</svg>")
    return "".join(out)


def _cell(value: Any, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape('-' if value is None else str(value))}</td>"


def _status(flag: bool | None) -> str:
    return "<td>-</td>" if flag is None else f'<td class="{"ok" if flag else "bad"}">{_ok(flag)}</td>'


def html(data: dict[str, Any]) -> str:
    e = escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(data['title'])}: {e(data['from'][:10])} to {e(data['to'][:10])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(data['title'])}</h1>",
        f'<p class="meta">Period <strong>{e(data["from"])}</strong> to <strong>{e(data["to"])}</strong> '
        f"(event time, UTC) &middot; generated {e(data['generated'])} &middot; "
        f"{len(data['streams'])} stream(s), {sum(s['events'] for s in data['streams'])} event(s)</p>",
    ]
    parts += [
        "<h2>Events per day</h2>",
        "<figure>",
        chart(data),
        "<figcaption>Events collected per day (event time) per source/organization; red bands: history the "
        "forwarder knows was lost (gap events).</figcaption></figure>",
    ]
    parts += [
        "<h2>Summary</h2>",
        "<table><thead><tr><th>stream</th><th class=num>events</th><th class=num>gaps</th>"
        "<th class=num>quarantined</th><th class=num>dead letters</th><th>delivered</th>"
        "<th>last reconcile</th></tr></thead><tbody>",
    ]
    for s in data["streams"]:
        rec = s["last_reconcile"]
        parts.append(
            "<tr>"
            + _cell(f"{s['source']}/{s['organization']}")
            + _cell(s["events"], "num")
            + _cell(s["gap_events"], "num")
            + _cell(s["quarantined"]["count"], "num")
            + _cell(len(s["dead_letters"]), "num")
            + "<td>"
            + "<br>".join(e(f"{k}: {v}") for k, v in _delivered(s))
            + "</td>"
            + (_status(None) if rec is None else _status(rec["ok"]))
            + "</tr>"
        )
    if not data["streams"]:
        parts.append('<tr><td colspan="7">No events in the period.</td></tr>')
    parts.append("</tbody></table>")
    for s in data["streams"]:
        parts += ['<section class="stream">', f"<h3>{e(s['source'])} / {e(s['organization'])}</h3>", "<dl>"]
        facts = _facts(s, lambda v: e(str(v)), lambda h: f'<span class="hash">{h}</span>', ";")
        parts += [f"<dt>{label}</dt><dd>{value}</dd>" for label, value in facts]
        parts.append("</dl>")
        if s["gaps"]:
            parts.append(
                "<table><thead><tr><th>gap noticed</th><th>lost from</th><th>lost to</th>"
                "<th class=num>chain seq</th><th>reason</th></tr></thead><tbody>"
            )
            parts += [
                "<tr>"
                + _cell(g["noticed"], "time")
                + _cell(g["from"], "time")
                + _cell(g["to"], "time")
                + _cell(g["chain_seq"], "num")
                + _cell(g["reason"])
                + "</tr>"
                for g in s["gaps"]
            ]
            parts.append("</tbody></table>")
        if s["quarantined"]["count"]:
            parts.append("<table><thead><tr><th>quarantined: reason</th><th class=num>entries</th></tr></thead><tbody>")
            parts += ["<tr>" + _cell(r) + _cell(n, "num") + "</tr>" for r, n in s["quarantined"]["reasons"].items()]
            parts.append("</tbody></table>")
        if s["dead_letters"]:
            parts.append(
                "<table><thead><tr><th>dead letter: sink</th><th>id</th><th>event time</th><th>reason</th>"
                "</tr></thead><tbody>"
            )
            parts += [
                "<tr>"
                + _cell(d["sink"])
                + f'<td class="hash">{e(d["id"])}</td>'
                + _cell(d["time"], "time")
                + _cell(d["reason"])
                + "</tr>"
                for d in s["dead_letters"]
            ]
            parts.append("</tbody></table>")
        parts.append("</section>")
    parts += [
        "<h2>Last verify and reconcile runs</h2>",
        "<table><thead><tr><th>kind</th><th>scope</th><th>at</th><th>result</th></tr></thead><tbody>",
    ]
    parts += [
        "<tr>" + _cell(r["kind"]) + _cell(r["scope"]) + _cell(r["at"], "time") + _status(r["ok"]) + "</tr>"
        for r in data["runs"]
    ]
    if not data["runs"]:
        parts.append('<tr><td colspan="4">None recorded.</td></tr>')
    parts += [
        "</tbody></table>",
        '<p class="meta">What this proves and what it does not: docs/evidence.md of audit-forwarder.</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
