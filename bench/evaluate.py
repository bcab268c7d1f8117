"""Speed of the evaluate stage: batched vs one-at-a-time generation on the tiny VLM, and metric time for 5,000 captions.

Generation: the same items answered one at a time (batch 1) and in left-padded batches, greedy, with the same
max_new_tokens; the answers must be identical (goal: batched >= 4x faster).
Metrics: `caption_metrics` (PTB tokenizer, BLEU-1..4, METEOR, ROUGE-L, CIDEr) on 5,000 synthetic captions with 5
references each, first with a cold METEOR (its JVM loads a paraphrase table once per process) then warm; plus the
bootstrap intervals of every caption metric and VQA accuracy on 5,000 items.

    python bench/evaluate.py [--items 64] [--batch_size 32] [--max_new_tokens 16] [--captions 5000]
"""
import argparse, json, os, platform, random, sys, tempfile, time
from pathlib import Path

# this file is named evaluate.py: keep its folder off sys.path so `import evaluate` finds the Hugging Face library
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

os.environ.setdefault("VLM_IT_QUIET", "1")
import torch
from PIL import Image
from vlm_it.core import make_record, turns
from vlm_it.tiny import make_tiny_model, SHAPES
from vlm_it.core import COLOURS, COCO_CATEGORIES
from vlm_it.evaluate import make_items
from vlm_it.models import load_vlm, generate_answers
from vlm_it.metrics import caption_scores, vqa_accuracy, vqa_answers_from_reference, bootstrap_ci, bleu_statistic, meteor_scorer


def bench_generation(n_items:int, batch_size:int, max_new_tokens:int) -> dict:
    d = Path(tempfile.mkdtemp())
    model_dir = make_tiny_model(d / "tiny")
    (d / "images").mkdir()
    rng = random.Random(0)
    recs = []
    for i in range(n_items):
        c, s = rng.choice(COLOURS), rng.choice(SHAPES)
        Image.new("RGB", (64 + i % 7, 64), c).save(d / "images" / f"{i}.png")
        q = rng.choice([f"What colour is the {s}?", f"How many {s}s are there?", f"Where is the {s} in the image?", "Describe the image."])
        recs.append(make_record(f"r{i}", f"images/{i}.png", turns(q, c)))
    items = make_items(recs)
    model, proc = load_vlm(model_dir, device="cpu")
    generate_answers(model, proc, items[:2], d, batch_size=2, max_new_tokens=4, show_progress=False)  # warm-up
    t = time.perf_counter()
    single = [generate_answers(model, proc, [it], d, max_new_tokens=max_new_tokens, show_progress=False)[0] for it in items]
    t_single = time.perf_counter() - t
    t = time.perf_counter()
    batched = generate_answers(model, proc, items, d, batch_size=batch_size, max_new_tokens=max_new_tokens, show_progress=False)
    t_batched = time.perf_counter() - t
    return {"items": n_items, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "one_at_a_time_s": round(t_single, 3),
            "batched_s": round(t_batched, 3), "speedup": round(t_single / t_batched, 2), "identical_answers": single == batched,
            "items_per_s_batched": round(n_items / t_batched, 1), "items_per_s_single": round(n_items / t_single, 1)}


def synthetic_captions(n:int, refs_per_item:int=5, seed:int=0):
    rng = random.Random(seed)
    def caption():
        return (f"{rng.choice(['A', 'The', 'Two', 'Some'])} {rng.choice(COLOURS)} {rng.choice(COCO_CATEGORIES)} "
                f"{rng.choice(['next to', 'on top of', 'in front of', 'beside'])} a {rng.choice(SHAPES)} "
                f"{rng.choice(['in a park', 'on a table', 'on the street', 'at night', ''])}.").replace(" .", ".")
    preds = {str(i): caption() for i in range(n)}
    refs = {str(i): [caption() for _ in range(refs_per_item)] for i in range(n)}
    return preds, refs


def bench_metrics(n:int, n_boot:int=1000) -> dict:
    preds, refs = synthetic_captions(n)
    t = time.perf_counter(); cs = caption_scores(preds, refs); cold = time.perf_counter() - t
    t = time.perf_counter(); caption_scores(preds, refs); warm = time.perf_counter() - t
    t = time.perf_counter()
    for k in range(1, 5): bootstrap_ci(cs["bleu_stats"], bleu_statistic(k), n_boot)
    for m in ("METEOR", "ROUGE-L", "CIDEr"): bootstrap_ci(cs["per_item"][m], None, n_boot)
    t_boot = time.perf_counter() - t
    answers = ["red", "2", "left", "yes"]
    t = time.perf_counter()
    acc = [vqa_accuracy(answers[i % 4], vqa_answers_from_reference(answers[(i // 4) % 4])) for i in range(n)]
    acc += [vqa_accuracy("Two.", ["two", "2", "2", "3", "two", "2", "three", "2", "2", "4"]) for _ in range(n)]
    t_vqa = time.perf_counter() - t
    return {"captions": n, "references_per_caption": 5, "caption_metrics_cold_s": round(cold, 2), "caption_metrics_warm_s": round(warm, 2),
            "bootstrap_7_metrics_s": round(t_boot, 2), "n_bootstrap": n_boot, "vqa_accuracy_items": 2 * n, "vqa_accuracy_s": round(t_vqa, 3),
            "scores": {k: round(v, 4) for k, v in cs["corpus"].items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_new_tokens", type=int, default=16)
    ap.add_argument("--captions", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    gen = bench_generation(a.items, a.batch_size, a.max_new_tokens)
    met = bench_metrics(a.captions)
    print(f"\n{'benchmark':<46}{'result':>18}")
    print("-" * 64)
    print(f"{'generation, one at a time (' + str(gen['items']) + ' items)':<46}{gen['one_at_a_time_s']:>16.2f} s")
    print(f"{'generation, batched (batch ' + str(gen['batch_size']) + ')':<46}{gen['batched_s']:>16.2f} s")
    print(f"{'speedup (goal >= 4x)':<46}{gen['speedup']:>17.1f}x")
    print(f"{'identical answers':<46}{str(gen['identical_answers']):>18}")
    print(f"{'caption metrics, ' + str(met['captions']) + ' captions, cold METEOR':<46}{met['caption_metrics_cold_s']:>16.2f} s")
    print(f"{'caption metrics, ' + str(met['captions']) + ' captions, warm':<46}{met['caption_metrics_warm_s']:>16.2f} s")
    print(f"{'bootstrap CIs, 7 metrics x ' + str(met['n_bootstrap']) + ' resamples':<46}{met['bootstrap_7_metrics_s']:>16.2f} s")
    print(f"{'VQA accuracy, ' + str(met['vqa_accuracy_items']) + ' items':<46}{met['vqa_accuracy_s']:>16.3f} s")
    res = {"generation": gen, "metrics": met, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__},
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(__file__).parent / "results" / "evaluate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
