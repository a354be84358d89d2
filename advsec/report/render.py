"""The report as a list of blocks, and its two renderings: self-contained HTML and Markdown.

Both renderings walk the same blocks, so the HTML and the Markdown can never disagree on a number.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str
    muted: bool = False


@dataclass(frozen=True)
class Alert:
    """A warning about the numbers, set apart so it cannot be missed."""

    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]  # right-aligned columns
    caption: str = ""
    sortable: bool = False


@dataclass(frozen=True)
class Image:
    file: str  # the PNG's name beside report.md
    png: bytes
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Audio:
    """A player for one clip: embedded as a WAV data URI in the HTML, linked as a file from the Markdown."""

    file: str  # the WAV's name beside report.md
    wav: bytes
    label: str


@dataclass(frozen=True)
class Players:
    """A row of players under a title, e.g. one sample clean and adversarial."""

    title: str
    clips: tuple[Audio, ...]


@dataclass(frozen=True)
class Code:
    summary: str
    text: str
    language: str = ""


Block = Heading | Text | Alert | Table | Image | Players | Code


def to_html(title: str, blocks: list[Block]) -> str:
    """One offline page: inline CSS, figures as data URIs, a few lines of script to sort sortable tables."""
    body = "\n".join(_html(block) for block in blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n<script>{_SORT}</script>\n</body>\n</html>\n"
    )


def to_markdown(blocks: list[Block]) -> str:
    """The same report in Markdown, linking the PNGs written beside it."""
    return "\n\n".join(_markdown(block) for block in blocks) + "\n"


def _html(block: Block) -> str:
    match block:
        case Heading(text, level):
            return f"<h{level}>{escape(text)}</h{level}>"
        case Text(text, muted):
            attributes = ' class="muted"' if muted else ""
            return f"<p{attributes}>{escape(text)}</p>"
        case Alert(text):
            return f'<p class="alert"><strong>Warning:</strong> {escape(text)}</p>'
        case Table():
            align = [' class="num"' if numeric else "" for numeric in block.numeric]
            head = "".join(f"<th{a}>{escape(h)}</th>" for a, h in zip(align, block.header, strict=True))
            rows = "\n".join(
                "<tr>"
                + "".join(f"<td{a}>{escape(v)}</td>" for a, v in zip(align, row, strict=True))
                + "</tr>"
                for row in block.rows
            )
            caption = f"<caption>{escape(block.caption)}</caption>" if block.caption else ""
            sortable = ' class="sortable"' if block.sortable else ""
            return (
                f'<div class="scroll"><table{sortable}>{caption}\n<thead><tr>{head}</tr></thead>\n'
                f"<tbody>\n{rows}\n</tbody></table></div>"
            )
        case Image(_, png, alt, caption):
            data = base64.b64encode(png).decode("ascii")
            below = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
            return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">{below}</figure>'
        case Players(title, clips):
            players = "".join(
                f'<label>{escape(clip.label)} <audio controls preload="none" '
                f'src="data:audio/wav;base64,{base64.b64encode(clip.wav).decode("ascii")}"></audio></label>'
                for clip in clips
            )
            return f'<div class="players"><span>{escape(title)}</span>{players}</div>'
        case Code(summary, text, _):
            return f"<details><summary>{escape(summary)}</summary>\n<pre>{escape(text)}</pre></details>"
    raise TypeError(f"unknown report block {block!r}")


def _markdown(block: Block) -> str:
    match block:
        case Heading(text, level):
            return f"{'#' * level} {text}"
        case Text(text, muted):
            return f"*{text}*" if muted else text
        case Alert(text):
            return f"> **Warning:** {text}"
        case Table():
            lines = [f"**{block.caption}**", ""] if block.caption else []
            lines.append(_md_row(block.header))
            lines.append("|" + "|".join("---:" if numeric else "---" for numeric in block.numeric) + "|")
            lines.extend(_md_row(row) for row in block.rows)
            return "\n".join(lines)
        case Image(file, _, alt, caption):
            return f"![{alt}]({file})" + (f"\n\n*{caption}*" if caption else "")
        case Players(title, clips):
            return f"{title}: " + " · ".join(f"[{clip.label}]({clip.file})" for clip in clips)
        case Code(summary, text, language):
            return (
                f"<details><summary>{summary}</summary>\n\n```{language}\n{text.rstrip()}\n```\n\n</details>"
            )
    raise TypeError(f"unknown report block {block!r}")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #fafafa; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 32px 64px; background: #fff; min-height: 100vh;
  box-shadow: 0 0 0 1px #eaeaea; }
h1 { font-size: 26px; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e5e5e5;
  font-weight: 600; }
h3 { font-size: 15px; margin: 22px 0 6px; }
p { margin: 8px 0; max-width: 80ch; }
p.muted { color: #656d76; font-size: 13.5px; }
p.alert { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 6px 12px; }
table { border-collapse: collapse; margin: 10px 0 20px; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; color: #1f2328; }
th, td { padding: 5px 12px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { border-bottom: 2px solid #d0d7de; font-weight: 600; background: #f6f8fa; }
tbody tr:hover { background: #f6f8fa; }
.num { text-align: right; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #eaeef2; }
figure { margin: 12px 0 24px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #656d76; font-size: 13.5px; margin-top: 6px; max-width: 80ch; }
.players { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 18px; margin: 6px 0;
  font-size: 13.5px; }
.players span { min-width: 16ch; font-weight: 600; }
.players label { display: flex; align-items: center; gap: 6px; }
.players audio { height: 30px; }
details { margin: 12px 0; }
summary { cursor: pointer; color: #0969da; }
pre { background: #f6f8fa; padding: 12px 16px; overflow-x: auto; font-size: 13px; border-radius: 6px;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""

# Click a header to sort by that column; numbers ("93.5%", "1,024") sort numerically, "—" last.
_SORT = """
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const body = table.tBodies[0], rows = [...body.rows], down = th.dataset.dir !== "desc";
    const key = r => { const t = r.cells[col].textContent, v = parseFloat(t.replace(/[,%]/g, ""));
      return isNaN(v) ? t : v; };
    rows.sort((a, b) => { const x = key(a), y = key(b);
      if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
      const c = x < y ? -1 : x > y ? 1 : 0;
      return down ? -c : c; });
    th.dataset.dir = down ? "desc" : "asc";
    body.append(...rows);
  }));
}
"""
