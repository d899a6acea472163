"""In-process sweep of recogniser options over the bench recordings (one model load for all).

    .venv/bin/python bench/minutes_sweep.py TAG '{"rescue_logprob": null}'   # TranscribeOptions overrides
    NAMES=holdout_somu CONDS=clean,noisy .venv/bin/python bench/minutes_sweep.py TAG

For each recording (committee, holdout_kankyo, holdout_somu) and condition (clean, noisy =
bench/minutes.py's pink noise + hum at 10 dB, seed 7; mp3): the pipeline's transcription with the
given ``TranscribeOptions`` overrides, the hallucination filter, and ``pipeline.assemble`` with the
recording's glossary (no senko; built-in clustering), as ``bench/minutes.py --diarization none``
does. Prints recognised CER (verbatim ref), final CER (clean ref), punctuation F1, S/D/I and CPU
s per audio s; decoded audio and VAD regions are cached in /tmp/minutes-sweep-cache. Faster than
the bench (no subprocess per row, no plain faster-whisper rows) for comparing options; quote the
bench for final numbers where time allows.
"""
import json, os, sys, time, tempfile, importlib.util, dataclasses
from pathlib import Path
import numpy as np
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != REPO / 'bench']
sys.path.insert(0, str(REPO))
spec = importlib.util.spec_from_file_location('bm', REPO / 'bench' / 'minutes.py'); bm = importlib.util.module_from_spec(spec); spec.loader.exec_module(bm)
from shared.config import load_settings
from minutes import glossary as glossary_mod, pipeline, metrics
from minutes.model import get_model
from minutes.transcribe import transcribe, TranscribeOptions
from minutes import hallucination
D = Path(__file__).resolve().parent / 'data' / 'minutes'; C = Path('/tmp/minutes-sweep-cache'); C.mkdir(exist_ok=True)
names = os.environ.get('NAMES', 'committee,holdout_kankyo,holdout_somu').split(',')
conds = os.environ.get('CONDS', 'clean,noisy,mp3').split(',')
tag = sys.argv[1]
overrides = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
settings = load_settings(home=Path(tempfile.mkdtemp()), whisper_threads=2)
model_path = str(bm.bundled_model_dir())
popts = pipeline.PipelineOptions(model=model_path, diarization='none')
model, _ = get_model(settings, model_path, workers=popts.model_workers(settings))
topts = dataclasses.replace(popts.transcribe_options(settings), **overrides)
res = {}
tot_cpu = tot_dur = 0
for name in names:
    ref = json.loads((D / f'{name}.json').read_text())
    rv = ''.join(u['text'] for u in ref['utterances']); rc = ''.join(u['clean_text'] for u in ref['utterances'])
    gl = glossary_mod.load(str(D / f'{name}.glossary.csv'))
    for cond in conds:
        f = C / f'{name}-{cond}.npz'
        if not f.exists():
            if cond == 'clean': a = bm.decode_16k(D / f'{name}.flac')
            elif cond == 'mp3': a = bm.decode_16k(D / f'{name}.mp3')
            else: a = bm.make_noisy(bm.decode_16k(D / f'{name}.flac'), ref, 10.0, seed=7)
            prep = pipeline.prepare(a)
            np.savez(f, audio=prep.audio, regions=np.array([[r.start, r.end] for r in prep.regions]))
        z = np.load(f)
        from minutes.types import SpeechRegion
        regions = [SpeechRegion(float(s), float(e)) for s, e in z['regions']]
        audio = z['audio']
        t0, c0 = time.perf_counter(), time.process_time()
        segs = []
        for seg in transcribe(model, audio, options=topts, regions=regions):
            hallucination.mark(seg, regions, popts.hallucination); segs.append(seg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        o = dataclasses.replace(popts, glossary=gl)
        draft = pipeline.assemble(segs, duration_s=len(audio)/16000, model='x', options=o, audio=audio)
        rec = ''.join(s.text for s in segs if not s.dropped)
        fin = ''.join(u.text for u in draft.utterances)
        dur = len(audio) / 16000
        e = bm.error_split(rc, fin)
        r = dict(rec=metrics.cer(rec, rv), fin=metrics.cer(fin, rc), punct=metrics.punctuation_f1(fin, rc).f1,
                 rtf=wall/dur, cpu=cpu/dur, sdi=e)
        tot_cpu += cpu; tot_dur += dur
        res[f'{name}-{cond}'] = dict(r, final_text=fin, rec_text=rec)
        print(f"{tag} {name:15s} {cond:6s} rec {r['rec']*100:5.1f} fin {r['fin']*100:5.1f} p {r['punct']:.2f} rtf {r['rtf']:.3f} cpu {r['cpu']:.3f} sdi {e}", flush=True)
print(f"{tag} MEAN fin {np.mean([v['fin'] for v in res.values()])*100:.2f} rec {np.mean([v['rec'] for v in res.values()])*100:.2f} cpu/audio {tot_cpu/tot_dur:.3f} load {os.getloadavg()[0]:.1f}")
Path(f'/tmp/minutes-sweep-{tag}.json').write_text(json.dumps(res, ensure_ascii=False), encoding='utf-8')
