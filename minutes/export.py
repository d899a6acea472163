"""Exports of a :class:`~minutes.draft.MinutesDraft`: .docx, .md, .txt, .srt, .vtt, .json.

``.docx`` (python-docx) is what clerks file: title, header table, 要点, then 発言 lines as
``［00:01:23］議長：本文``. Subtitles use the 整文 text by default (``raw=True`` for 素起こし).
"""
from __future__ import annotations

import json
from pathlib import Path

from minutes.draft import MinutesDraft

FORMATS = ("docx", "md", "txt", "srt", "vtt", "json")


def hms(t: float) -> str:
    t = max(0.0, t)
    h, rem = divmod(int(t), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def _ts(t: float, sep: str) -> str:
    t = max(0.0, t)
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _header_rows(d: MinutesDraft) -> list[tuple[str, str]]:
    h = d.header
    return [("会議名", h.title), ("日時", h.date), ("場所", h.place),
            ("出席者", "、".join(h.attendees)), ("議題", "、".join(h.agenda))]


def _line_text(u, raw: bool) -> str:
    return u.raw_text if raw else u.text


def to_json(d: MinutesDraft) -> str:
    return json.dumps(d.to_dict(), ensure_ascii=False, indent=1)


def to_markdown(d: MinutesDraft, *, raw: bool = False) -> str:
    out = [f"# {d.header.title or '議事録（案）'}", ""]
    for k, v in _header_rows(d):
        out.append(f"- **{k}**: {v}")
    out += ["", "## 要点", ""]
    if d.key_points:
        out += [f"- 【{p.kind}】{p.text}（{p.speaker}、{hms(p.start)}）" for p in d.key_points]
    else:
        out.append("- （該当なし）")
    out += ["", "## 発言記録", ""]
    for u in d.utterances:
        out.append(f"**{u.speaker}**（{hms(u.start)}）: {_line_text(u, raw)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def to_text(d: MinutesDraft, *, raw: bool = False) -> str:
    out = [d.header.title or "議事録（案）", ""]
    out += [f"{k}：{v}" for k, v in _header_rows(d)]
    out += ["", "■要点"]
    out += [f"・【{p.kind}】{p.text}（{p.speaker}）" for p in d.key_points] or ["・（該当なし）"]
    out += ["", "■発言記録"]
    out += [f"［{hms(u.start)}］{u.speaker}：{_line_text(u, raw)}" for u in d.utterances]
    return "\n".join(out) + "\n"


def to_srt(d: MinutesDraft, *, raw: bool = False) -> str:
    blocks = []
    for n, u in enumerate(d.utterances, 1):
        blocks.append(f"{n}\n{_ts(u.start, ',')} --> {_ts(max(u.end, u.start + 0.5), ',')}\n"
                      f"{u.speaker}：{_line_text(u, raw)}\n")
    return "\n".join(blocks)


def to_vtt(d: MinutesDraft, *, raw: bool = False) -> str:
    blocks = ["WEBVTT\n"]
    for u in d.utterances:
        blocks.append(f"{_ts(u.start, '.')} --> {_ts(max(u.end, u.start + 0.5), '.')}\n"
                      f"<v {u.speaker}>{_line_text(u, raw)}\n")
    return "\n".join(blocks)


def write_docx(d: MinutesDraft, path: Path | str, *, raw: bool = False) -> Path:
    from docx import Document  # noqa: PLC0415
    from docx.oxml.ns import qn  # noqa: PLC0415
    from docx.shared import Pt  # noqa: PLC0415

    doc = Document()
    style = doc.styles["Normal"]
    style.font.name = "MS Mincho"
    style.font.size = Pt(10.5)
    rpr = style.element.get_or_add_rPr()
    rfonts = rpr.find(qn("w:rFonts"))
    if rfonts is None:
        rfonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.append(rfonts)
    rfonts.set(qn("w:eastAsia"), "ＭＳ 明朝")
    doc.add_heading(d.header.title or "議事録（案）", level=1)
    table = doc.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for k, v in _header_rows(d):
        cells = table.add_row().cells
        cells[0].text = k
        cells[1].text = v
    doc.add_heading("要点", level=2)
    if d.key_points:
        for p in d.key_points:
            doc.add_paragraph(f"【{p.kind}】{p.text}（{p.speaker}、{hms(p.start)}）", style="List Bullet")
    else:
        doc.add_paragraph("（該当なし）")
    doc.add_heading("発言記録", level=2)
    for u in d.utterances:
        para = doc.add_paragraph()
        para.add_run(f"［{hms(u.start)}］").font.size = Pt(8)
        para.add_run(f"{u.speaker}：").bold = True
        para.add_run(_line_text(u, raw))
    path = Path(path)
    doc.save(str(path))
    return path


def write(d: MinutesDraft, path: Path | str, fmt: str | None = None, *, raw: bool = False) -> Path:
    """Write ``d`` to ``path`` in ``fmt`` (default: from the file extension)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt == "docx":
        return write_docx(d, path, raw=raw)
    makers = {"md": to_markdown, "txt": to_text, "srt": to_srt, "vtt": to_vtt}
    if fmt == "json":
        text = to_json(d)
    elif fmt in makers:
        text = makers[fmt](d, raw=raw)
    else:
        from shared.errors import InvalidInput  # noqa: PLC0415

        raise InvalidInput(f"出力形式「{fmt}」には対応していません（{', '.join(FORMATS)}）。")
    path.write_text(text, encoding="utf-8")
    return path
