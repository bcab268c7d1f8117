"""Throughput of the autolabel request runner against the local OpenAI-compatible server.

The server answers every request after a fixed latency, so with `concurrency` requests in flight no client can do better
than concurrency / latency requests per second. The score is the measured rate divided by that bound (goal: >= 90%).

The server runs in its own process by default, as a real endpoint does (`--server thread` runs it in a thread of this
process, where the two event loops share one interpreter lock).

    python bench/autolabel.py [--requests 1600] [--concurrency 32] [--latency 0.2] [--server process|thread]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1600)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--server", choices=["process", "thread"], default="process")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "autolabel.json"))
    a = ap.parse_args()
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
