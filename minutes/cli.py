"""``niiza-ai minutes …``: the command-line adapter over :mod:`minutes.pipeline`.

Contract (other tools call it; keep the names):
``niiza-ai minutes transcribe AUDIO [--model PATH] [--glossary FILE] --json OUT.json
[--docx OUT.docx] [--srt OUT.srt]``. The JSON has ``duration_s``, ``model`` and ``utterances``
(``[{start, end, speaker, text, raw_text}]``), plus ``header``, ``key_points`` and ``dropped``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from shared.errors import NiizaError


@click.group("minutes")
def minutes() -> None:
    """AI議事録作成: 会議の録音から議事録の下書きを作ります。"""


@minutes.command("transcribe")
@click.argument("audio", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model", default=None, metavar="PATH",
              help="音声認識モデル（CTranslate2 形式のフォルダ、またはモデル名）。省略時は設定値（既定: 同梱の base）。")
@click.option("--glossary", "glossary_path", default=None, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="用語登録ファイル（CSV/TSV: 用語,読み または 誤,正）。")
@click.option("--json", "json_out", required=True, metavar="OUT.json",
              type=click.Path(dir_okay=False, path_type=Path), help="結果の JSON の出力先。")
@click.option("--docx", "docx_out", default=None, metavar="OUT.docx",
              type=click.Path(dir_okay=False, path_type=Path), help="議事録案（Word）の出力先。")
@click.option("--srt", "srt_out", default=None, metavar="OUT.srt",
              type=click.Path(dir_okay=False, path_type=Path), help="字幕（SRT）の出力先。")
def transcribe_cmd(audio: Path, model: str | None, glossary_path: Path | None, json_out: Path,
                   docx_out: Path | None, srt_out: Path | None) -> None:
    """録音ファイル AUDIO を文字起こしし、議事録案を書き出します。"""
    from shared.config import load_settings  # noqa: PLC0415

    from minutes import export, glossary, pipeline  # noqa: PLC0415

    try:
        settings = load_settings()
        settings.ensure_dirs()
        options = pipeline.PipelineOptions(model=model)
        if glossary_path is not None:
            options.glossary = glossary.load(glossary_path)
        last = [-1]

        def progress(p) -> None:
            pct = int(p.fraction * 100)
            if pct >= last[0] + 5 or pct == 100:
                last[0] = pct
                eta = f"、残り約{int(p.eta_s)}秒" if p.eta_s is not None and pct < 100 else ""
                click.echo(f"進捗 {pct}%{eta}", err=True)

        draft, segments, stats = pipeline.run(settings, audio, options=options, on_progress=progress)
        export.write(draft, json_out, "json")
        if docx_out is not None:
            export.write(draft, docx_out, "docx")
        if srt_out is not None:
            export.write(draft, srt_out, "srt")
    except NiizaError as exc:
        raise click.ClickException(exc.message) from exc
    speakers = len({u.speaker for u in draft.utterances})
    click.echo(
        f"文字起こし完了: 音声 {stats.duration_s:.1f} 秒、発言 {len(draft.utterances)} 件、"
        f"話者 {speakers} 人、除外 {len(draft.dropped)} 件、処理時間 {stats.decode_s + stats.recognize_s + stats.assemble_s:.1f} 秒"
        f"（RTF {stats.rtf:.3f}）、モデル {draft.model}"
    )


# `niiza-ai minutes worker` / `purge` (job queue commands, minutes/worker_cli.py)
from minutes.worker_cli import purge, worker  # noqa: E402

minutes.add_command(worker)
minutes.add_command(purge)


if __name__ == "__main__":  # pragma: no cover
    minutes(sys.argv[1:])
