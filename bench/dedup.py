"""Operating point of duplicate detection in preprocess: precision, recall per kind of copy, and the cost of the second step.

    python bench/dedup.py                    # 40 pictures per kind (200 distinct, 800 files); a few minutes on 2 cores
    python bench/dedup.py --n 10 --pairs     # a quick look, plus the distance distribution of every proposed pair

The set: five kinds of distinct pictures (natural images from the demo generator, documents that share one invoice
template and differ in their text, bar/line charts of one style, screenshot-like UIs, and flat or nearly flat images),
each saved as a lossless original plus three copies: re-encoded (JPEG q70, same size), resized (80%, JPEG q80) and
slightly cropped (2% off each side, JPEG q90). Files are shuffled under neutral names. Every file goes through
`vlm_it.preprocess.preprocess` with the defaults; a drop is correct when the kept twin shows the same picture.
`--before DIR` also runs the same set through another checkout (e.g. the code before the change) for comparison.
Results: a table on stdout and bench/results/dedup.json.
"""
from __future__ import annotations
import argparse, json, os, platform, random, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("natural", "document", "chart", "screenshot", "flat")
COPIES = ("reencode", "resize", "crop")
WORDS = "alpha beta gamma delta total amount invoice item price tax date order account balance paid due ship".split()


def natural(seed:int) -> Image.Image:
    "The demo generator's shape picture (vlm_it.pipeline.synthetic_image), at 384 px."
    from vlm_it.pipeline import synthetic_image
    return synthetic_image(random.Random(seed), 384)[0]


def document(seed:int) -> Image.Image:
    "An invoice: one template for all, text that differs per seed (the hard case for a 64-bit hash)."
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (620, 820), "white"); d = ImageDraw.Draw(im)
    d.text((40, 40), f"INVOICE No. {rng.integers(1000, 99999)}", fill="black", font_size=28)
    d.text((40, 90), f"Customer {rng.integers(100, 999)}, {rng.integers(1, 99)} Main Street", fill="black", font_size=16)
    for k in range(int(rng.integers(4, 14))):
        d.text((40, 150 + 28 * k), f"{' '.join(rng.choice(WORDS, 2))} x{rng.integers(1, 9)}", fill="black", font_size=16)
        d.text((450, 150 + 28 * k), f"{rng.integers(1, 999)}.{rng.integers(10, 99)}", fill="black", font_size=16)
    d.line([(40, 700), (580, 700)], fill="black", width=2)
    d.text((360, 720), f"TOTAL {rng.integers(100, 9999)}.00", fill="black", font_size=20)
    return im


def chart(seed:int) -> Image.Image:
    "A bar or line chart of one style (axes, title, 4-9 values)."
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (640, 480), "white"); d = ImageDraw.Draw(im)
    d.text((40, 15), f"Sales {rng.integers(2000, 2030)} region {rng.integers(1, 40)}", fill="black", font_size=20)
    d.line([(60, 420), (610, 420)], fill="black", width=2); d.line([(60, 60), (60, 420)], fill="black", width=2)
    vals = rng.integers(20, 340, int(rng.integers(4, 10)))
    step = 540 // len(vals)
    if seed % 2:
        for k, v in enumerate(vals): d.rectangle([70 + k * step, 420 - v, 60 + (k + 1) * step - 10, 419], fill=(60, 110, 200))
    else: d.line([(80 + k * step, 420 - v) for k, v in enumerate(vals)], fill=(200, 60, 60), width=3)
    for k in range(len(vals)): d.text((75 + k * step, 430), f"Q{k + 1}", fill="black", font_size=14)
    return im


def screenshot(seed:int) -> Image.Image:
    "A UI: title bar, sidebar menu, a panel of text lines and buttons."
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (800, 500), (240, 240, 240)); d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 800, 32], fill=(50, 60, 80)); d.text((12, 7), f"App {rng.integers(1, 99)} - settings", fill="white", font_size=16)
    d.rectangle([0, 32, 180, 500], fill=(225, 228, 235))
    for k in range(int(rng.integers(4, 10))): d.text((16, 50 + 30 * k), " ".join(rng.choice(WORDS, 1)).title(), fill=(30, 30, 30), font_size=15)
    for k in range(int(rng.integers(3, 9))): d.text((210, 60 + 32 * k), " ".join(rng.choice(WORDS, 4)), fill=(20, 20, 20), font_size=15)
    for k in range(int(rng.integers(1, 4))):
        x = 210 + 130 * k; d.rounded_rectangle([x, 420, x + 110, 455], 6, fill=(40, 120, 220)); d.text((x + 20, 428), rng.choice(WORDS).title(), fill="white", font_size=15)
    return im


def flat(seed:int) -> Image.Image:
    "A flat colour, a gentle gradient or a nearly blank page with a small mark: little structure for a hash."
    rng = np.random.default_rng(seed)
    kind, c = seed % 3, tuple(int(v) for v in rng.integers(0, 256, 3))
    if kind == 0: return Image.new("RGB", (400, 300), c)
    if kind == 1:
        g = np.linspace(0, 1, 400)[None, :, None] * (np.array(c) - 128) + 128
        return Image.fromarray(np.repeat(g, 300, 0).astype(np.uint8))
    im = Image.new("RGB", (400, 560), "white"); x, y = (int(v) for v in rng.integers(20, 300, 2))
    ImageDraw.Draw(im).text((x, y), f"p. {seed}", fill="black", font_size=18)
    return im


MAKERS = {"natural": natural, "document": document, "chart": chart, "screenshot": screenshot, "flat": flat}


def copy_of(im:Image.Image, kind:str) -> tuple[Image.Image, dict]:
    if kind == "reencode": return im, {"format": "JPEG", "quality": 70}
    if kind == "resize": return im.resize((round(im.width * 0.8), round(im.height * 0.8)), Image.Resampling.LANCZOS), {"format": "JPEG", "quality": 80}
    dx, dy = round(im.width * 0.02), round(im.height * 0.02)
    return im.crop((dx, dy, im.width - dx, im.height - dy)), {"format": "JPEG", "quality": 90}


def make_set(n:int, folder:Path, seed:int=0) -> dict[str, dict]:
    "Write the set under `folder` (shuffled neutral names); returns `{file_name: {picture, kind, copy}}`."
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for kind in KINDS:
        for i in range(n):
            pic = f"{kind}-{i}"
            im = MAKERS[kind](1000 * KINDS.index(kind) + i + seed)
            files.append((pic, kind, "original", im, {"format": "PNG"}))
            for c in COPIES: files.append((pic, kind, c, *copy_of(im, c)))
    random.Random(seed).shuffle(files)
    truth = {}
    for k, (pic, kind, c, im, save) in enumerate(files):
        name = f"f{k:05d}" + (".png" if save["format"] == "PNG" else ".jpg")
        im.save(folder / name, **save)
        truth[name] = {"picture": pic, "kind": kind, "copy": c}
    return truth


def run_preprocess(code_root:Path, inp:Path, out:Path, workers:int) -> tuple[dict, float, float]:
    "Run preprocess from `code_root` in a fresh process; returns (report, wall seconds, CPU seconds of the process tree)."
    code = (f"import json\nfrom vlm_it.preprocess import preprocess, PreprocessConfig\n"
            f"r = preprocess(PreprocessConfig(input={str(inp)!r}, output={str(out)!r}, num_workers={workers}))\n")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=code_root, env={**os.environ, "VLM_IT_QUIET": "1", "PYTHONPATH": str(code_root)})
    _, status, ru = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status): raise SystemExit(f"preprocess from {code_root} failed")
    return json.loads((out / "preprocess_report.json").read_text()), secs, ru.ru_utime + ru.ru_stime


def score(report:dict, truth:dict) -> dict:
    "Precision, recall per copy kind, distinct pictures lost, and whether the original was the copy kept."
    kept_twin = {d["file_name"]: d["duplicate_of"] for d in report["duplicates"]}
    wrong = {f for f, t in kept_twin.items() if truth[t]["picture"] != truth[f]["picture"]}
    survivors = {truth[f]["picture"] for f in truth if f not in kept_twin}
    original = {t["picture"]: f for f, t in truth.items() if t["copy"] == "original"}
    # a copy is found when it and its original are not both kept, and whichever was dropped has a twin of its picture
    found = lambda f: ((f in kept_twin or original[truth[f]["picture"]] in kept_twin)
                       and f not in wrong and original[truth[f]["picture"]] not in wrong)
    rec, by_kind = {}, {}
    for c in COPIES + ("any copy",):
        mine = [f for f, t in truth.items() if t["copy"] != "original" and c in (t["copy"], "any copy")]
        rec[c] = round(sum(map(found, mine)) / len(mine), 4)
    for k in KINDS:
        mine = [f for f, t in truth.items() if t["kind"] == k and t["copy"] != "original"]
        by_kind[k] = round(sum(map(found, mine)) / len(mine), 4)
    return {"drops": len(kept_twin), "wrong_drops": len(wrong), "precision": round(1 - len(wrong) / max(len(kept_twin), 1), 4),
            "recall": rec, "recall_by_kind": by_kind, "pictures_lost": len(set(original) - survivors),
            "originals_dropped": sum(truth[f]["copy"] == "original" for f in kept_twin),
            "wrong_examples": [(f, kept_twin[f], truth[f], truth[kept_twin[f]]) for f in sorted(wrong)[:5]]}


def pair_distances(folder:Path, truth:dict, method:str="phash") -> dict:
    "Hash and pixel distances of every pair the hash proposes (distance <= 4, colour within 32), split into copies and distinct."
    from vlm_it.images import DupLimits, Pictures, NearDupIndex, pixel_distance
    pics = Pictures(method)
    idx, rows = NearDupIndex(DupLimits().max_hash, DupLimits().max_colour), {"copies": [], "distinct": []}
    for f in sorted(truth):
        fp = pics.fingerprint(folder / f)
        for g, d in idx.candidates(*fp):
            same = truth[f]["picture"] == truth[g]["picture"]
            which = truth[f]["copy"] if truth[g]["copy"] == "original" else truth[g]["copy"] if truth[f]["copy"] == "original" else "copy-copy"
            rows["copies" if same else "distinct"].append((d, pixel_distance(pics.thumb(folder / f), pics.thumb(folder / g)), truth[f]["kind"], which))
        idx.add(*fp, f)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="distinct pictures per kind")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--before", default=None, help="another checkout to run the same set through (e.g. the code before the change)")
    ap.add_argument("--pairs", action="store_true", help="also print the distances of proposed pairs (raw files, not preprocessed)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "dedup.json"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlm_it_dedup_"))
    try:
        truth = make_set(a.n, work / "raw")
        print(f"set: {len(truth)} files, {a.n} distinct pictures per kind x {len(KINDS)} kinds, each with {len(COPIES)} copies", flush=True)
        result = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                  "set": {"pictures_per_kind": a.n, "kinds": KINDS, "copies": COPIES, "files": len(truth)}, "runs": {}}
        if a.pairs:
            rows = pair_distances(work / "raw", truth)
            print(f"pairs the hash proposes (raw files): {len(rows['distinct'])} of distinct pictures, pixel distance "
                  f"min {min((x[1] for x in rows['distinct']), default=None)}")
            for c in COPIES + ("copy-copy",):
                pd = sorted(x[1] for x in rows["copies"] if x[3] == c)
                if pd: print(f"  {c:<9} pairs {len(pd):>4}: pixel distance median {pd[len(pd) // 2]:.3f}, 95th pct {pd[int(0.95 * (len(pd) - 1))]:.3f}, max {pd[-1]:.3f}")
            result["pairs"] = {k: [list(x) for x in v] for k, v in rows.items()}
        for name, root in [("now", ROOT)] + ([("before", Path(a.before).resolve())] if a.before else []):
            out = work / f"out_{name}"
            report, secs, cpu = run_preprocess(root, work / "raw", out, a.workers)
            s = score(report, truth)
            s.update(seconds=round(secs, 2), cpu_ms_per_image=round(1000 * cpu / len(truth), 1), images_per_s=round(len(truth) / secs, 2))
            result["runs"][name] = s
            shutil.rmtree(out, ignore_errors=True)
        print(f"\n{'code':<8} {'drops':>6} {'wrong':>6} {'precision':>9} {'lost':>5} " + " ".join(f"{c:>9}" for c in COPIES + ('any copy',))
              + f" {'orig. dropped':>13} {'img/s':>7} {'CPU ms/img':>10}")
        for name, s in result["runs"].items():
            print(f"{name:<8} {s['drops']:>6} {s['wrong_drops']:>6} {s['precision']:>9.4f} {s['pictures_lost']:>5} "
                  + " ".join(f"{s['recall'][c]:>9.3f}" for c in COPIES + ('any copy',)) + f" {s['originals_dropped']:>13} {s['images_per_s']:>7.1f} {s['cpu_ms_per_image']:>10.1f}")
            print("         recall by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in s["recall_by_kind"].items()))
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(a.json).with_suffix(".tmp"); tmp.write_text(json.dumps(result, indent=2, default=str)); os.replace(tmp, a.json)
        print(f"wrote {a.json}")
    finally: shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
