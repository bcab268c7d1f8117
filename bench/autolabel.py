"""Throughput of the autolabel request runner against the local OpenAI-compatible server.

The server answers every request after a fixed latency, so with `concurrency` requests in flight no client can do better
than concurrency / latency requests per second. The score is the measured rate divided by that bound (goal: >= 90%).

The server runs in its own process by default, as a real endpoint does (`--server thread` runs it in a thread of this
process, where the two event loops share one interpreter lock).

`--budget` measures the cost cap instead (issue 17): 60 synthetic images, `detailed_description`, a price table at which
one answer costs about 1.2 USD and a request's worst case about 14.5 USD, at caps of 40 and 100 USD and concurrency 1
and 8 (and batch mode). Every run must stay under its cap, stop within one worst case of it (or finish), and concurrency
8 must label the same images as concurrency 1.

    python bench/autolabel.py [--requests 1600] [--concurrency 32] [--latency 0.2] [--server process|thread]
    python bench/autolabel.py --budget
"""
import argparse, contextlib, json, multiprocessing as mp, os, platform, tempfile, time
from pathlib import Path

os.environ.setdefault("VLM_IT_QUIET", "1")
from vlm_it.client import run_chat_requests
from vlm_it.mock_server import mock_openai_server


def answer(body): return "A red bus on a street."

def _serve(latency, conn):
    with mock_openai_server(answer, latency=latency) as url:
        conn.send(str(url)); conn.recv()   # serve until the parent says stop

@contextlib.contextmanager
def server(latency:float, where:str):
    "The base URL of a mock server with `latency`, in a child process or in a thread of this one."
    if where == "thread":
        with mock_openai_server(answer, latency=latency) as url: yield url
        return
    parent, child = mp.Pipe()
    p = mp.get_context("spawn").Process(target=_serve, args=(latency, child), daemon=True); p.start()
    try: yield parent.recv()
    finally: parent.send("stop"); p.join(10)

def measure(n_requests:int, concurrency:int, latency:float, where:str="process", tag:str="bench") -> dict:
    "Send `n_requests` fresh requests at `concurrency` to a server with `latency`; requests/s and share of the bound."
    reqs = [{"key": f"{tag}-{i}", "messages": [{"role": "user", "content": f"Describe image {i} in detail."}]} for i in range(n_requests)]
    with tempfile.TemporaryDirectory() as d, server(latency, where) as url:
        run_chat_requests(reqs[:concurrency], base_url=url, model="mock", ledger_path=Path(d) / "warm.jsonl", concurrency=concurrency)
        t0 = time.perf_counter()
        res = run_chat_requests(reqs, base_url=url, model="mock", ledger_path=Path(d) / "ledger.jsonl", concurrency=concurrency)
        secs = time.perf_counter() - t0
    ok = sum(r["ok"] for r in res)
    bound = concurrency / latency
    return {"client": "run_chat_requests", "server": where, "requests": n_requests, "ok": ok, "concurrency": concurrency, "latency_s": latency, "seconds": round(secs, 3),
            "requests_per_s": round(n_requests / secs, 1), "bound_per_s": round(bound, 1), "efficiency": round(n_requests / secs / bound, 4)}


def measure_raw(n_requests:int, concurrency:int, latency:float, where:str="process") -> dict:
    "The same load sent by a bare `httpx2.AsyncClient`: what any client can reach on this machine right now."
    import asyncio, httpx2
    async def go(url, n):
        queue = asyncio.Queue()
        for i in range(n): queue.put_nowait(i)
        async with httpx2.AsyncClient(timeout=60) as client:
            async def worker():
                while not queue.empty():
                    i = queue.get_nowait()
                    r = await client.post(url + "/chat/completions", json={"model": "mock", "messages": [{"role": "user", "content": f"Describe image {i} in detail."}]})
                    r.json()
            t0 = time.perf_counter()
            await asyncio.gather(*[worker() for _ in range(concurrency)])
            return time.perf_counter() - t0
    with server(latency, where) as url:
        asyncio.run(go(url, concurrency))
        secs = asyncio.run(go(url, n_requests))
    bound = concurrency / latency
    return {"client": "bare httpx2 (reference)", "server": where, "requests": n_requests, "ok": n_requests, "concurrency": concurrency,
            "latency_s": latency, "seconds": round(secs, 3), "requests_per_s": round(n_requests / secs, 1), "bound_per_s": round(bound, 1),
            "efficiency": round(n_requests / secs / bound, 4)}


DESCRIPTION = ("A single coloured shape sits on a plain white background. It is drawn with clean, sharp edges and fills "
               "a small part of the frame, slightly off centre, with nothing else around it: no text, no people, no "
               "other objects, and no shadows or texture on the background. The lighting is flat and even.")
BUDGET_PRICES = {"m": {"input": 300.0, "output": 14000.0, "image_tokens": {"low": 85}}}   # USD per million tokens

def describer(body): return json.dumps({"description": DESCRIPTION})

def make_preprocessed(folder:Path, n:int) -> Path:
    "A preprocess output folder of `n` small synthetic images and their metadata."
    from PIL import Image, ImageDraw
    (folder / "images").mkdir(parents=True, exist_ok=True); rows = []
    for i in range(n):
        im = Image.new("RGB", (96, 72), "white")
        ImageDraw.Draw(im).rectangle([10 + i % 40, 20, 40 + i % 40, 50], fill=(200, 30, 30))
        im.save(folder / f"images/img{i}.jpg")
        rows.append({"id": f"img{i:02d}", "file_name": f"images/img{i}.jpg", "source_file": f"raw/{i}.png", "width": 96, "height": 72,
                     "captions": [f"A red square, number {i}."], "objects": [{"category": "square", "bbox": [10 + i % 40, 20, 30, 30]}]})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder

def measure_budget(n_images:int=60) -> dict:
    "The issue-17 table: records, cost and cap used at each (cap, concurrency, mode), plus the dry run's worst case per request."
    from vlm_it.autolabel import AutolabelConfig, autolabel
    from vlm_it.core import load_records
    rows = []
    with tempfile.TemporaryDirectory() as d, mock_openai_server(describer, batch_seconds=0.02) as url:
        prep = make_preprocessed(Path(d) / "pre", n_images)
        kw = dict(input=str(prep), base_url=url, model="m", tasks="detailed_description", prices=BUDGET_PRICES, poll_interval=0.01)
        dry = autolabel(AutolabelConfig(output=str(Path(d) / "dry"), dry_run=True, **kw))["estimate"]
        worst = dry["cost_usd_upper_bound"] / dry["requests"]
        for cap, conc, mode in [(100, 1, "online"), (100, 8, "online"), (40, 1, "online"), (40, 8, "online"), (40, 8, "batch")]:
            out = Path(d) / f"{mode}-{cap}-{conc}"
            t0 = time.perf_counter()
            s = autolabel(AutolabelConfig(output=str(out), max_cost=cap, concurrency=conc, mode=mode, **kw))
            ids = sorted(r["id"] for r in load_records(out / "annotations.json"))
            rows.append({"max_cost": cap, "concurrency": conc, "mode": mode, "records": s["records"], "cost_usd": s["cost_usd"],
                         "cap_used": s["cap_used"], "stopped": s["stopped"], "seconds": round(time.perf_counter() - t0, 2), "ids": ids})
    for r in rows:   # the checks of the issue
        same = next(x for x in rows if (x["max_cost"], x["concurrency"], x["mode"]) == (r["max_cost"], 1, "online"))
        r["ok"] = bool(r["cost_usd"] <= r["max_cost"] and (r["records"] == n_images or r["max_cost"] - r["cost_usd"] < worst)
                       and (r["mode"] == "batch" or (r["ids"] == same["ids"] and abs(r["cost_usd"] - same["cost_usd"]) < worst)))
    return {"images": n_images, "worst_case_per_request_usd": round(worst, 4), "expected_per_request_usd": round(dry["cost_usd_expected"] / dry["requests"], 4),
            "runs": [{k: v for k, v in r.items() if k != "ids"} for r in rows]}

def budget_main(out_path):
    res = measure_budget()
    print(f"{res['images']} images, detailed_description; worst case per request {res['worst_case_per_request_usd']} USD")
    print(f"{'run':<40} {'records':>7} {'cost USD':>9} {'cap used':>8} {'stopped':>8} {'seconds':>7} {'ok':>3}")
    for r in res["runs"]:
        run = f"--max_cost {r['max_cost']} --concurrency {r['concurrency']}" + (" --mode batch" if r["mode"] == "batch" else "")
        print(f"{run:<40} {r['records']:>4}/{res['images']} {r['cost_usd']:>9.2f} {r['cap_used']:>8.0%} {str(r['stopped']):>8} {r['seconds']:>7} {'yes' if r['ok'] else 'NO':>3}")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps({"benchmark": "autolabel budget (issue 17)", **res}, indent=2))
    print(f"wrote {out_path}")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", action="store_true", help="measure the cost cap at several concurrencies instead of throughput")
    ap.add_argument("--requests", type=int, default=1600)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--server", choices=["process", "thread"], default="process")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "autolabel.json"))
    a = ap.parse_args()
    if a.budget: return budget_main(Path(a.out).with_name("autolabel_budget.json"))
    rows = [measure(a.requests, a.concurrency, a.latency, a.server), measure_raw(a.requests, a.concurrency, a.latency, a.server)]
    print(f"{'client':<24} {'server':>7} {'requests':>8} {'conc.':>5} {'latency':>7} {'seconds':>7} {'req/s':>7} {'bound':>6} {'efficiency':>10}")
    for r in rows:
        print(f"{r['client']:<24} {r['server']:>7} {r['requests']:>8} {r['concurrency']:>5} {r['latency_s']:>7} {r['seconds']:>7} {r['requests_per_s']:>7} "
              f"{r['bound_per_s']:>6} {r['efficiency']:>10.1%}")
    eff = rows[0]["efficiency"]
    print(f"goal >= 90% of the bound: {'met' if eff >= 0.9 else 'NOT met'} ({eff:.1%}); "
          f"{eff / rows[1]['efficiency']:.1%} of the bare-client reference; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    out = {"benchmark": "autolabel.run_chat_requests", "goal_efficiency": 0.9, "met": eff >= 0.9, "efficiency": eff,
           "share_of_bare_client": round(eff / rows[1]["efficiency"], 4), "runs": rows,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1min": os.getloadavg()[0]}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
