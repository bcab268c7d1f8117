"""Benchmark of the preprocess stage: images/s against a plain Pillow open-resize-save loop, and peak memory vs dataset size.

    python bench/preprocess.py                 # 500 timed images + a 2000-image memory run (about 10 minutes on 2 busy cores)
    python bench/preprocess.py --n 100 --n-large 300   # a quick look

Inputs are generated once (3000x2000 JPEGs, smooth colour fields with shapes and sensor-like noise, about 1 MB each) and
cached under --data-dir. Every timed run starts from an empty output folder, so nothing is reused. Each contender runs in
its own process; peak memory is the largest RSS sum over that process and all its children, sampled every 50 ms, and
CPU time is the user + system time of the process and its workers (a measure that other load on the machine barely moves).
Results: a table on stdout and bench/results/preprocess.json.
"""
from __future__ import annotations
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
W, H = 3000, 2000


def _make_one(args):
    i, out = args
    p = Path(out) / f"photo_{i:05d}.jpg"
    if p.exists() and p.stat().st_size > 0: return
    rng = np.random.default_rng(i)
    im = Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).resize((W, H), Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(im)
    for _ in range(12):
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        d.ellipse([x, y, x + int(rng.integers(50, 900)), y + int(rng.integers(50, 600))], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    a = np.asarray(im, dtype=np.int16)
    noise = _NOISE[: H, : W] if _NOISE is not None else 0
    a = np.clip(a + np.roll(noise, int(rng.integers(0, H)), axis=0), 0, 255).astype(np.uint8)
    tmp = p.with_suffix(".tmp")
    Image.fromarray(a).save(tmp, "JPEG", quality=92)
    os.replace(tmp, p)

_NOISE = None
def _init_noise():
    global _NOISE
    _NOISE = np.random.default_rng(12345).normal(0, 6, (H, W, 3)).astype(np.int16)


def make_photos(n:int, folder:Path) -> list[Path]:
    "Generate (or reuse) `n` photo-sized JPEGs in `folder`."
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(i, str(folder)) for i in range(n) if not (folder / f"photo_{i:05d}.jpg").exists()]
    if todo:
        print(f"generating {len(todo)} {W}x{H} JPEGs in {folder} (cached for later runs)...", flush=True)
        import multiprocessing as mp
        with mp.get_context("fork").Pool(os.cpu_count(), initializer=_init_noise) as pool:
            for _ in pool.imap_unordered(_make_one, todo, chunksize=4): pass
    return sorted(folder.glob("photo_*.jpg"))[:n]


def run_measured(code:str) -> dict:
    "Run `code` in a fresh Python; return wall seconds, CPU seconds (all processes) and the peak RSS of its process tree."
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "VLM_IT_QUIET": "1"})
    ps, peak, stop = psutil.Process(proc.pid), [0], threading.Event()
    def sample():
        while not stop.is_set():
            try:
                tree = [ps] + ps.children(recursive=True)
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error: pass
            time.sleep(0.05)
    t = threading.Thread(target=sample, daemon=True); t.start()
    t0 = time.perf_counter()
    _, status, ru = os.wait4(proc.pid, 0)  # rusage covers the child and the workers it reaped
    secs = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set(); t.join()
    if proc.returncode: raise SystemExit(f"benchmark child failed with exit code {proc.returncode}:\n{code}")
    return {"seconds": round(secs, 2), "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 2), "peak_rss_mb": round(peak[0] / 2**20, 1)}


def stage_code(inp:Path, out:Path, n:int, workers:int, max_side:int, quality:int) -> str:
    return (f"from vlm_it.preprocess import preprocess, PreprocessConfig\n"
            f"r = preprocess(PreprocessConfig(input={str(inp)!r}, output={str(out)!r}, limit={n}, num_workers={workers}, "
            f"max_side={max_side}, jpeg_quality={quality}))\n"
            f"assert r['kept'] + len(r['skipped']) + len(r['duplicates']) == {n}, r['inputs']\n")


def plain_code(inp:Path, out:Path, n:int, max_side:int, quality:int, thumbnail:bool=False) -> str:
    "A plain single-process Pillow loop: open, convert to RGB, resize (LANCZOS, like the stage) or thumbnail, save."
    resize = ("im.thumbnail((M, M), Image.Resampling.LANCZOS)" if thumbnail else
              "s = min(1, M / max(im.size)); im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)")
    return (f"from pathlib import Path\nfrom PIL import Image\nM = {max_side}\nout = Path({str(out)!r}); out.mkdir(parents=True, exist_ok=True)\n"
            f"for p in sorted(Path({str(inp)!r}).glob('photo_*.jpg'))[:{n}]:\n"
            f"    im = Image.open(p)\n    im = im.convert('RGB')\n    {resize}\n    im.save(out / p.name, 'JPEG', quality={quality})\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images in the timed comparison")
    ap.add_argument("--n-large", type=int, default=2000, help="images in the memory run (compared with --n)")
    ap.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "vlm_it_bench" / "photos"), help="cache of generated inputs")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--with-thumbnail", action="store_true", help="also time a Pillow thumbnail() loop (draft decoding, one process)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "preprocess.json"))
    a = ap.parse_args()

    data = Path(a.data_dir)
    t0 = time.perf_counter(); photos = make_photos(max(a.n, a.n_large), data); gen_s = time.perf_counter() - t0
    n_large = min(a.n_large, len(photos))
    mb = sum(p.stat().st_size for p in photos[: a.n]) / a.n / 2**20
    print(f"inputs: {len(photos)} JPEGs {W}x{H}, mean {mb:.2f} MB (generation/check {gen_s:.0f} s); {os.cpu_count()} cores", flush=True)

    work = Path(tempfile.mkdtemp(prefix="vlm_it_bench_out_"))
    runs = []
    def timed(name, code, n, out):
        shutil.rmtree(out, ignore_errors=True)
        print(f"running: {name} ({n} images)...", flush=True)
        m = run_measured(code)
        row = {"name": name, "images": n, **m, "images_per_s": round(n / m["seconds"], 2), "cpu_ms_per_image": round(1000 * m["cpu_seconds"] / n, 1)}
        runs.append(row); shutil.rmtree(out, ignore_errors=True)
        return row

    try:
        base = timed("plain Pillow loop (open, convert, resize, save)", plain_code(data, work / "plain", a.n, a.max_side, a.quality), a.n, work / "plain")
        if a.with_thumbnail:
            timed("Pillow thumbnail() loop (uses draft)", plain_code(data, work / "thumb", a.n, a.max_side, a.quality, True), a.n, work / "thumb")
        one = timed("vlm-it preprocess, 1 worker", stage_code(data, work / "s1", a.n, 1, a.max_side, a.quality), a.n, work / "s1")
        full = timed(f"vlm-it preprocess, {a.workers} workers", stage_code(data, work / "sN", a.n, a.workers, a.max_side, a.quality), a.n, work / "sN")
        large = timed(f"vlm-it preprocess, {a.workers} workers", stage_code(data, work / "sL", n_large, a.workers, a.max_side, a.quality), n_large, work / "sL")
    finally: shutil.rmtree(work, ignore_errors=True)

    for r in runs: r["speedup_vs_plain"] = round(r["images_per_s"] / base["images_per_s"], 2)
    print()
    print(f"{'contender':<48} {'images':>6} {'seconds':>8} {'img/s':>7} {'x plain':>8} {'CPU ms/img':>10} {'cores used':>10} {'peak RSS MB':>12}")
    for r in runs:
        r["cores_used"] = round(r["cpu_seconds"] / r["seconds"], 2)  # well below the worker count: the machine is busy
        print(f"{r['name']:<48} {r['images']:>6} {r['seconds']:>8.1f} {r['images_per_s']:>7.2f} {r['speedup_vs_plain']:>8.2f} "
              f"{r['cpu_ms_per_image']:>10.1f} {r['cores_used']:>10.2f} {r['peak_rss_mb']:>12.1f}")
    load = os.getloadavg()
    ratio = full["images_per_s"] / base["images_per_s"]
    mem_ratio = large["peak_rss_mb"] / full["peak_rss_mb"]
    cpu_ratio = base["cpu_ms_per_image"] / full["cpu_ms_per_image"]
    print(f"\nspeed-up of the stage ({a.workers} workers) over the plain loop: {ratio:.2f}x wall (goal >= 3x); "
          f"{cpu_ratio:.2f}x less CPU per image")
    print(f"load average at the end (1, 5, 15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores "
          "(other work on the machine slows every contender)")
    print(f"peak memory: {full['peak_rss_mb']:.0f} MB for {a.n} images, {large['peak_rss_mb']:.0f} MB for {n_large} images ({mem_ratio:.2f}x)")
    result = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "pillow": Image.__version__,
                          "platform": platform.platform()},
              "inputs": {"count": len(photos), "size": [W, H], "mean_mb": round(mb, 3)},
              "settings": {"max_side": a.max_side, "jpeg_quality": a.quality, "workers": a.workers},
              "runs": runs, "speedup": round(ratio, 2), "cpu_speedup": round(cpu_ratio, 2), "goal_speedup": 3.0,
              "load_average_at_end": [round(x, 2) for x in load],
              "peak_rss_mb": {str(a.n): full["peak_rss_mb"], str(n_large): large["peak_rss_mb"]}}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.json).with_suffix(".tmp"); tmp.write_text(json.dumps(result, indent=2)); os.replace(tmp, a.json)
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
