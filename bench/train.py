"""Benchmark of the train stage: `python bench/train.py [--mode cpu|memory|gpu|lengths|all] [--steps N]`.

CPU mode (always runs): the tiny offline VLM (vlm_it.tiny), steps/s per method (full, lora, qlora) through `train()`,
and the collator's cost per batch against the whole training step.

Memory mode (CPU or GPU): LLaVA-shaped models of a few widths and depths with random weights, 2 steps of `train` on
~1,000-token samples per method; the measured peak of tensor memory (`vlm_it.preflight.PeakMemory`) against the preflight
estimate (`estimate_run`, without the CUDA context). `--bf16` trains with bf16 autocast on CPU, as a GPU run does.

GPU mode (runs only when CUDA is available, otherwise it prints that it was skipped): a 7B-shaped model with random
weights (memory and speed do not depend on the weights), QLoRA, 1024 tokens per sample at a stated image resolution,
batch 1, activation checkpointing: peak GPU memory (allocated and reserved) and tokens/s of `vlm_it.train.train`, the
preflight estimate beside it, then TRL's SFTTrainer on the same model, data and LoRA settings in the same process.
`--model llava`: LLaVA-1.5-7B (CLIP ViT-L/336 + Vicuna-7B: 576 image tokens per 336 px image); `--model qwen2_5_vl`:
Qwen2.5-VL-7B (`vlm_it.tiny.qwen25_vl_7b_config`, its 152k vocabulary; the processor fixed at 448 x 448 px, 256 image
tokens). `--shapes tiny` runs the GPU-mode code path with a tiny config (works on CPU) to check the harness itself;
`--shapes mid` (a 1024-wide, 8-layer language model, 170M parameters) makes the same comparison on CPU.

Lengths mode (`--mode lengths`, CPU with `--shapes mid` or GPU): `--samples` samples of varied length, batch 4, one
epoch: tokens/s of this stage without and with `group_by_length`, packed (one pack of `--seq_len` tokens a step, and
4 packs a step), and of TRL's SFTTrainer, which pads each batch to its longest sample; the first and last logged loss
of each run. On a GPU a 2-step run first compiles the kernels (Liger's Triton kernels among them), untimed.

Loss mode (`--mode loss`, CPU or GPU; not part of `all`): a LLaVA with a 128-wide language model over vocabularies of
32k-152k tokens, one sample of `--seq_len` tokens (the first eighth untrained): peak memory of one forward + backward
(`vlm_it.loss.peak_memory`) and time per step with the model's own loss (full logits) and with `vlm_it.loss.vlm_loss`
(chunks of 256 trained tokens; on a GPU with liger_kernel installed, also Liger's fused kernel). `loss_mib` is the peak
less that of the same step with chunks of one token, beside the analytic `loss_memory_bytes`.

Prepare mode (`--mode prepare`, CPU): `--records` records (50,000 by default: the toy records repeated with distinct ids,
36 images) and the tiny LLaVA processor; seconds from the `load_rows` call to a dataset ready (its last row read), the
first run (nothing cached: check, tokenise, write the cache) against the second (read from the cache), with num_proc 1
and 2, and the old path (`prepare_rows` in one loop, then `Dataset.from_list`) for reference.

Prints a table and writes bench/results/train-MODE.json.
"""
from __future__ import annotations
import argparse, dataclasses, json, os, platform, sys, tempfile, time, warnings
from pathlib import Path

# run as `python bench/train.py`, this folder comes first on sys.path, and its evaluate.py would shadow HF `evaluate`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

warnings.filterwarnings("ignore")
os.environ.setdefault("VLM_IT_QUIET", "1")
RESULTS = Path(__file__).parent/"results"/"train-{mode}.json"


def _table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    w = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(w[k]) for k in keys), "  ".join("-" * w[k] for k in keys)]
    lines += ["  ".join(str(r.get(k, "")).ljust(w[k]) for k in keys) for r in rows]
    return "\n".join(lines)


from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    "Trainer callback recording wall time per optimizer step (synchronising CUDA) and the logged losses."
    def __init__(self): self.times, self.losses, self._t = [], [], None
    def _sync(self):
        import torch
        if torch.cuda.is_available(): torch.cuda.synchronize()
    def on_step_begin(self, *a, **k): self._sync(); self._t = time.perf_counter()
    def on_step_end(self, *a, **k): self._sync(); self.times.append(time.perf_counter() - self._t)
    def on_log(self, args, state, control, logs=None, **k):
        if logs and "loss" in logs: self.losses.append(round(float(logs["loss"]), 3))


def bench_cpu(steps: int) -> list[dict]:
    import torch
    from transformers import TrainingArguments, AutoProcessor
    from vlm_it.tiny import make_tiny_model
    from vlm_it.core import load_records
    from vlm_it.train import TrainConfig, train
    from vlm_it.tiny import make_toy_data
    from vlm_it.data import prepare_rows, VLMCollator
    tmp = Path(tempfile.mkdtemp())
    model_dir = make_tiny_model(tmp/"tiny", arch="llava")
    data = make_toy_data(tmp/"data", n=32)
    proc = AutoProcessor.from_pretrained(model_dir)
    rows, _ = prepare_rows(load_records(data), proc, data.parent, 256)
    collate, bs = VLMCollator(proc, 256), 4
    t0 = time.perf_counter(); n = 0
    for _ in range(5):
        for i in range(0, len(rows), bs): collate(rows[i:i + bs]); n += 1
    collate_ms = 1000 * (time.perf_counter() - t0) / n
    out = []
    for method in ("full", "lora", "qlora"):
        timer = StepTimer()
        args = TrainingArguments(output_dir=str(tmp/method), max_steps=steps + 2, per_device_train_batch_size=bs,
                                 learning_rate=1e-4, logging_steps=1000, save_strategy="no", report_to="none",
                                 disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, seed=0)
        t0 = time.perf_counter()
        train(TrainConfig(model_name_or_path=str(model_dir), input=str(data), method=method, max_length=256), args,
              callbacks=[timer])
        total = time.perf_counter() - t0
        step = sorted(timer.times[2:])[len(timer.times[2:]) // 2]  # median, first 2 steps are warm-up
        out.append({"mode": "cpu", "model": "tiny-llava", "method": method, "batch": bs, "steps_per_s": round(1 / step, 2),
                    "step_ms": round(1000 * step, 1), "collator_ms": round(collate_ms, 1),
                    "collator_share": f"{100 * collate_ms / (1000 * step):.0f}%", "train_call_s": round(total, 1),
                    "torch_threads": torch.get_num_threads()})
    return out


def _llava_config(shapes):
    "LLaVA-1.5-7B's config for '7b'; for 'mid', 'tiny' or `(hidden, layers, mlp, kv_heads)`, a smaller language model."
    from vlm_it.tiny import llava15_7b_config
    if shapes == "7b": return llava15_7b_config()
    from transformers import LlavaConfig, CLIPVisionConfig, LlamaConfig
    h, layers, mlp, kv = {"tiny": (64, 2, 128, 4), "mid": (1024, 8, 2752, 16)}[shapes] if isinstance(shapes, str) else shapes
    return LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=32 if shapes == "tiny" else 256, intermediate_size=64 if shapes == "tiny" else 1024,
                       num_hidden_layers=2, num_attention_heads=2, image_size=336, patch_size=14, projection_dim=32),
                       text_config=LlamaConfig(hidden_size=h, intermediate_size=mlp, num_hidden_layers=layers,
                       num_attention_heads=max(h // 64, 4), num_key_value_heads=kv, vocab_size=32064), image_token_id=32000,
                       image_seq_length=576)


def build_llava(folder: Path, shapes) -> Path:
    """A random-weight LLaVA-1.5 (7B shapes or tiny) + a processor whose offline BPE tokenizer is padded with unused
    tokens so that `<image>` has LLaVA-1.5's id (32000) and every id fits the 32064-token vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, AddedToken
    from transformers import PreTrainedTokenizerFast, LlavaForConditionalGeneration, LlavaProcessor, CLIPImageProcessorPil
    from vlm_it.tiny import default_corpus, CHAT_TEMPLATES
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(default_corpus(), trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"],
                            show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([f"<unused_{i}>" for i in range(32000 - tok.get_vocab_size())])
    tok.add_special_tokens([AddedToken(s, special=True) for s in ["<image>", "<pad>", "<|user|>", "<|assistant|>", "<|end|>"]])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", unk_token="<unk>",
                                 pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    assert hf.convert_tokens_to_ids("<image>") == 32000
    ip = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    proc = LlavaProcessor(image_processor=ip, tokenizer=hf, patch_size=14, num_additional_image_tokens=1,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATES["llava"])
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(dev):
        model = LlavaForConditionalGeneration(_llava_config(shapes)).to(torch.bfloat16 if dev == "cuda" else torch.float32)
    model.save_pretrained(folder); proc.save_pretrained(folder)
    del model
    if dev == "cuda": torch.cuda.empty_cache()
    return folder


def long_data(folder: Path, n: int, image_size: int, answer_words) -> Path:
    "Records with answers of `answer_words` words (one number, or one per record); noise images of `image_size` pixels."
    import numpy as np
    from PIL import Image
    from vlm_it.core import make_record, turns, save_records
    from vlm_it.tiny import default_corpus
    (folder/"images").mkdir(parents=True, exist_ok=True)
    rng, words, recs = np.random.default_rng(0), " ".join(default_corpus()).split(), []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(folder/f"images/{i}.png")
        k = answer_words[i] if isinstance(answer_words, list) else answer_words
        answer = " ".join(words[j % len(words)] for j in range(i * 7, i * 7 + k))
        recs.append(make_record(f"long-{i}", f"images/{i}.png", turns("Describe the image in detail.", answer)))
    return save_records(recs, folder/"annotations.json")


MEMORY_CASES = [  # (hidden, layers, mlp, kv_heads) of the language model, TrainConfig options
    ((1024, 8, 2752, 16), {"method": "qlora"}), ((1024, 8, 2752, 16), {"method": "qlora", "kbit_upcast": False}),
    ((1024, 8, 2752, 16), {"method": "lora"}), ((1536, 6, 4096, 4), {"method": "qlora"}),
    ((512, 4, 1376, 8), {"method": "full"}), ((2048, 4, 5504, 8), {"method": "qlora"})]


def bench_memory(seq_len: int, bf16: bool = False) -> list[dict]:
    "Peak tensor memory of 2 steps of `train` (PeakMemory callback) against `estimate_run`, per case."
    import torch
    from transformers import AutoProcessor, TrainingArguments
    from vlm_it.train import TrainConfig, train, load_rows
    from vlm_it.data import VLMCollator
    from vlm_it.preflight import PeakMemory, estimate_run, CUDA_OVERHEAD_GIB
    cuda, tmp, out = torch.cuda.is_available(), Path(tempfile.mkdtemp()), []
    bf16 = bf16 or cuda  # a GPU run trains with bf16 autocast
    data = long_data(tmp/"data", n=4, image_size=336, answer_words=seq_len)
    for i, (shapes, opts) in enumerate(MEMORY_CASES):
        model_dir = build_llava(tmp/f"m{i}", shapes)
        cfg = TrainConfig(model_name_or_path=str(model_dir), input=str(data), max_length=seq_len,
                          dtype="bf16" if bf16 and opts["method"] != "full" else "auto", **opts)
        args = TrainingArguments(output_dir=str(tmp/f"run{i}"), max_steps=2, per_device_train_batch_size=1, bf16=bf16,
                                 save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=100,
                                 use_cpu=not cuda, dataloader_num_workers=0)
        peak = PeakMemory()
        train(cfg, args, callbacks=[peak])
        proc = AutoProcessor.from_pretrained(model_dir)
        est = estimate_run(cfg, args, load_rows(cfg, proc)[0], VLMCollator(proc, seq_len), act_bytes=2 if bf16 else 4)
        e = est["total_gib"] - CUDA_OVERHEAD_GIB
        h, layers, mlp, kv = shapes
        out.append({"mode": "memory-gpu" if cuda else "memory-cpu", "lm": f"h{h} L{layers} f{mlp} kv{kv}",
                    "method": opts["method"] + ("" if opts.get("kbit_upcast", True) else " (no upcast)"),
                    "compute": "bf16 autocast" if bf16 else "fp32", "tokens": est["tokens"],
                    "params_M": round(est["params"]["total"] / 1e6, 1), "measured_gib": round(peak.peak_gib, 3),
                    "estimated_gib": round(e, 3), "ratio": round(e / peak.peak_gib, 3)})
        if cuda: torch.cuda.empty_cache()
    return out


def bench_gpu(shapes: str, steps: int, image_size: int, seq_len: int, skip_trl: bool, model: str = "llava") -> list[dict]:
    import torch
    from transformers import AutoProcessor, TrainingArguments
    from vlm_it.train import TrainConfig, train, load_rows
    from vlm_it.data import VLMCollator
    from vlm_it.preflight import PeakMemory, estimate_run
    cuda = torch.cuda.is_available()
    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    model_dir = build_llava(tmp/"llava", shapes) if model == "llava" else build_qwen(tmp/"qwen", shapes)
    print(f"built and saved the random-weight model in {time.perf_counter() - t0:.0f} s", flush=True)
    name = f"llava-1.5-{shapes}" if model == "llava" else f"qwen2.5-vl-{shapes}"
    data = long_data(tmp/"data", n=steps + 4, image_size=image_size, answer_words=seq_len)
    cfg = TrainConfig(model_name_or_path=str(model_dir), input=str(data), method="qlora", max_length=seq_len,
                      kbit_upcast=False)
    proc = AutoProcessor.from_pretrained(model_dir)
    ds, _ = load_rows(cfg, proc)
    tokens = sum(min(r, seq_len) for r in ds["length"][2:steps + 2])
    common = dict(max_steps=steps + 2, per_device_train_batch_size=1, learning_rate=1e-4, logging_steps=1000,
                  save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=2 if cuda else 0,
                  bf16=cuda and torch.cuda.is_bf16_supported(), fp16=cuda and not torch.cuda.is_bf16_supported(),
                  use_cpu=not cuda, seed=0)
    est = estimate_run(cfg, TrainingArguments(output_dir=str(tmp/"ours"), **common), ds, VLMCollator(proc, seq_len),
                       act_bytes=2 if cuda else 4)  # CPU computes in fp32
    out = []
    timer, peak = StepTimer(), PeakMemory()  # on CPU the profiler behind PeakMemory would slow the timed steps
    if cuda: torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    train(cfg, TrainingArguments(output_dir=str(tmp/"ours"), **common), callbacks=[timer] + ([peak] if cuda else []))
    t = sum(timer.times[2:])
    e = est["total_gib"] - est["cuda_overhead"]
    out.append({"mode": "gpu" if cuda else "gpu-path-on-cpu", "model": name, "trainer": "vlm-it",
                "image_px": image_size, "seq_len": seq_len, "peak_gib": round(peak.peak_gib, 3) if cuda else "-",
                "reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else "-",
                "estimate_gib": round(e, 3), "estimate_error": f"{e / peak.peak_gib - 1:+.1%}" if cuda else "-",
                "tokens_per_s": round(tokens / t, 1), "load_and_train_s": round(time.perf_counter() - t0, 1)})
    print(out[-1], flush=True)
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    if skip_trl: return out
    try: out.append(bench_trl(model_dir, data, cfg, common, steps, tokens, tmp, name, image_size, seq_len))
    except Exception as e:  # report, do not hide
        out.append({"mode": "gpu" if cuda else "gpu-path-on-cpu", "model": name, "trainer": "trl",
                    "error": f"{type(e).__name__}: {str(e)[:200]}"})
    print(out[-1], flush=True)
    return out


def bench_trl(model_dir, data, cfg, common, steps, tokens, tmp, shapes, image_size, seq_len, warmup: int = 2) -> dict:
    "TRL SFTTrainer on the same model, data, LoRA targets and quantisation; `tokens` over the steps after `warmup`."
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    from vlm_it.core import load_records, to_messages
    from vlm_it.models import load_model, lora_targets
    from vlm_it.core import load_image
    from vlm_it.preflight import PeakMemory
    cuda = torch.cuda.is_available()
    model, proc = load_model(cfg, checkpointing=True)
    base = model.unload() if hasattr(model, "unload") else model  # TRL adds LoRA itself
    target, _ = lora_targets(base, cfg)
    rows = []
    for r in load_records(data):
        m = to_messages(r)
        rows.append({"messages": m["messages"], "images": [load_image(Path(data).parent/p) for p in m["images"]]})
    ds = Dataset.from_list(rows)
    args = SFTConfig(output_dir=str(tmp/"trl"), max_length=seq_len, gradient_checkpointing=True,
                     gradient_checkpointing_kwargs={"use_reentrant": False}, assistant_only_loss=False, **common)
    timer, peak = StepTimer(), PeakMemory()
    trainer = SFTTrainer(model=base, args=args, train_dataset=ds, processing_class=proc, callbacks=[timer] + ([peak] if cuda else []),
                         peft_config=LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                target_modules=target))
    trainer.train()
    t = sum(timer.times[warmup:])
    return {"mode": "gpu" if cuda else "gpu-path-on-cpu", "model": shapes if "-" in str(shapes) else f"llava-1.5-{shapes}", "trainer": "trl-sft",
            "image_px": image_size, "seq_len": seq_len, "peak_gib": round(peak.peak_gib, 3) if cuda else "-",
            "reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else "-", "tokens_per_s": round(tokens / t, 1),
            "steps": len(timer.times)}


def build_qwen(folder: Path, shapes="mid") -> Path:
    """A random-weight Qwen2.5-VL: for 'mid', a language model of the mid LLaVA's size (1024 wide, 8 layers, a 32k
    vocabulary) and a 2-block vision tower of the real geometry (14-pixel patches, 2 x 2 merge), its processor fixed at
    448 x 448 pixels, so an image is 256 tokens; 'tiny' is 64 wide; '7b' is Qwen2.5-VL-7B's language model and vision
    tower (152k vocabulary). The tokenizer is the tiny family's (ids below 512)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    from vlm_it.families import _qwen_tokenizer, _qwen_ids, _text, chatml_template, QWEN_IMAGE, QWEN_VIDEO
    from vlm_it.tiny import qwen25_vl_7b_config
    tok = _qwen_tokenizer()
    if shapes == "7b":
        big = qwen25_vl_7b_config()
        t, v = big.text_config, big.vision_config
        text = {**_text(tok), **{k: getattr(t, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "rope_scaling", "tie_word_embeddings")}, "head_dim": t.hidden_size // t.num_attention_heads}
        vision = {k: getattr(v, k) for k in ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size", "patch_size",
                  "spatial_merge_size", "temporal_patch_size", "window_size", "fullatt_block_indexes", "hidden_act")}
    else:
        h, layers, mlp, kv, heads = {"mid": (1024, 8, 2752, 16, 16), "tiny": (64, 2, 128, 2, 4)}[shapes]
        half = h // heads // 2  # mRoPE splits half the head dimension into time, height and width
        text = {**_text(tok), "vocab_size": 32064, "hidden_size": h, "intermediate_size": mlp, "num_hidden_layers": layers,
                "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": h // heads,
                "rope_scaling": {"type": "mrope", "mrope_section": [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]}}
        vision = dict(depth=2, hidden_size=256 if shapes == "mid" else 32, intermediate_size=1024 if shapes == "mid" else 64, num_heads=4,
                      out_hidden_size=h, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1])
    px = 448 * 448
    ip = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, size={"shortest_edge": px, "longest_edge": px})
    proc = Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
                               chat_template=chatml_template(QWEN_IMAGE, QWEN_VIDEO))
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda": torch.set_default_dtype(torch.bfloat16)  # built in bf16: a 7B model never exists in fp32
    with torch.device(dev):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok)))
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(folder); proc.save_pretrained(folder)
    del model
    if dev == "cuda": torch.cuda.empty_cache()
    return folder


def mixed_data(folder: Path, n: int, image_size: int, answer_words: list, image_every: int) -> Path:
    "`long_data`'s records, but only every `image_every`-th one with an image: the others are text-only (the text-heavy mix)."
    from vlm_it.core import load_records, save_records, make_record, turns
    recs = load_records(long_data(folder, n, image_size, answer_words))
    out = [r if i % image_every == 0 else make_record(r["id"], None, turns("Write about the topic in detail.", r["conversations"][1]["value"], images=0))
           for i, r in enumerate(recs)]
    return save_records(out, folder/"annotations.json")


LENGTH_RUNS = ("plain", "grouped", "pack1", "pack4", "trl")


def bench_lengths(shapes, seq_len: int, n: int = 24, batch: int = 4, model: str = "llava", mix: str = "image",
                  runs=LENGTH_RUNS) -> list[dict]:
    """Samples of varied length, batch 4, one epoch: this stage without and with length grouping, with packing, and TRL's
    SFTTrainer (which pads each batch to its longest sample); tokens/s over every sample's tokens and every step.
    `mix`: 'image' (every sample has an image) or 'text' (three in four are text-only)."""
    import numpy as np, torch
    from transformers import AutoProcessor, TrainingArguments
    from vlm_it.train import TrainConfig, train, load_rows
    cuda, tmp, out = torch.cuda.is_available(), Path(tempfile.mkdtemp()), []
    model_dir = build_llava(tmp/"llava", shapes) if model == "llava" else build_qwen(tmp/"qwen", shapes)
    words = np.random.default_rng(1).integers(32, int(seq_len * 0.7), n).tolist()
    data = long_data(tmp/"data", n=n, image_size=336, answer_words=words) if mix == "image" else \
           mixed_data(tmp/"data", n=n, image_size=336, answer_words=words, image_every=4)
    common = dict(num_train_epochs=1, per_device_train_batch_size=batch, learning_rate=1e-4, logging_steps=1,
                  save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=2 if cuda else 0,
                  bf16=cuda and torch.cuda.is_bf16_supported(), fp16=cuda and not torch.cuda.is_bf16_supported(),
                  use_cpu=not cuda, seed=0)
    name = f"llava-1.5-{shapes}" if model == "llava" else f"qwen2.5-vl-{shapes}"
    row = {"mode": "lengths-gpu" if cuda else "lengths-cpu", "model": name, "mix": mix, "batch": batch, "samples": n}
    # packing: per_device_train_batch_size counts packs of max_length tokens: 1 pack a step, and `batch` packs a step
    variants = [v for r, v in zip(LENGTH_RUNS, [("", batch), ("group_by_length", batch), ("packing", 1), ("packing", batch)]) if r in runs]
    if cuda: variants = [("warm-up", batch)] + variants  # compiles the GPU kernels (Triton's among them) outside the timed runs
    base = TrainConfig(model_name_or_path=str(model_dir), input=str(data), method="qlora", max_length=seq_len, kbit_upcast=False,
                       prepared_cache="off")
    tokens = sum(load_rows(base, AutoProcessor.from_pretrained(model_dir))[0]["length"])  # every run trains these same tokens
    for variant, b in variants:
        cfg, timer = dataclasses.replace(base, group_by_length=variant == "group_by_length", packing=variant == "packing"), StepTimer()
        kw = {**common, "per_device_train_batch_size": b, **({"max_steps": 2} if variant == "warm-up" else {})}
        train(cfg, TrainingArguments(output_dir=str(tmp/f"ours-{variant or 'plain'}-{b}"), **kw), callbacks=[timer])
        if variant == "warm-up": continue
        out.append({**row, "trainer": f"vlm-it {variant}".strip() + (f" ({b} per step)" if variant == "packing" else ""),
                    "tokens": tokens, "steps": len(timer.times), "seconds": round(sum(timer.times), 1),
                    "tokens_per_s": round(tokens / sum(timer.times), 1), "first_loss": timer.losses[0], "last_loss": timer.losses[-1]})
        print(out[-1], flush=True)
    if "trl" not in runs: return out
    try:
        trl = bench_trl(model_dir, data, base, common, None, tokens, tmp, name, 336, seq_len, warmup=0)  # after ours: kernels compiled
        out.append({**row, "trainer": "trl-sft", "tokens": tokens, "steps": trl["steps"], "tokens_per_s": trl["tokens_per_s"],
                    "seconds": round(tokens / trl["tokens_per_s"], 1)})
    except Exception as e:  # report, do not hide
        out.append({**row, "trainer": "trl-sft", "error": f"{type(e).__name__}: {str(e)[:200]}"})
    print(out[-1], flush=True)
    return out


LOSS_VOCABS = (32768, 65536, 131072, 152064)


def bench_loss(seq_len: int, steps: int, vocabs=LOSS_VOCABS, width: int = 128, chunk: int = 256) -> list[dict]:
    "Peak memory and step time of one forward + backward with the model's own loss and with `vlm_loss`, per vocabulary size."
    import torch
    from vlm_it.loss import liger_available, loss_memory_bytes, peak_memory, vlm_loss, wide_vocab_llava
    cuda = torch.cuda.is_available()
    dev, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    paths = [("full", None), (f"chunked {chunk}", False)] + ([("liger", True)] if liger_available() else [])
    out = []
    for V in vocabs:
        model = wide_vocab_llava(V, width).to(dev, dtype)
        ids = torch.randint(0, V - 2, (1, seq_len), device=dev)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                 "labels": torch.where(torch.arange(seq_len, device=dev) < seq_len // 8, -100, ids)}
        def no_loss():  # chunks of one token: the step without the loss's memory, to subtract
            model.zero_grad(set_to_none=True); vlm_loss(model, batch, chunk_size=1, use_liger=False).backward()
        base, _ = peak_memory(no_loss)
        for name, liger in paths:
            def step():
                model.zero_grad(set_to_none=True)
                loss = model(**batch).loss if liger is None else vlm_loss(model, batch, chunk_size=chunk, use_liger=liger)
                loss.backward()
                return loss.item()
            step()  # warm-up
            if cuda: torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps): loss = step()
            if cuda: torch.cuda.synchronize()
            ms = 1000 * (time.perf_counter() - t0) / steps
            peak, _ = peak_memory(step)
            est = loss_memory_bytes(seq_len, V, chunk, 2 if cuda else 4, "full" if liger is None else "chunked")
            out.append({"mode": "loss-gpu" if cuda else "loss-cpu", "vocab": V, "tokens": seq_len, "width": width, "loss": name,
                        "dtype": str(dtype).replace("torch.", ""), "peak_mib": round(peak / 2**20, 1),
                        "loss_mib": round((peak - base) / 2**20, 1), "estimate_loss_mib": round(est / 2**20, 1), "ms_per_step": round(ms, 1), "loss_value": round(loss, 4)})
        del model
        if cuda: torch.cuda.empty_cache()
    return out


def bench_prepare(n: int) -> list[dict]:
    "Seconds from `load_rows` to a dataset ready: first run vs cached second run, num_proc 1 and 2, and the old loop."
    from datasets import Dataset
    from transformers import AutoProcessor
    from vlm_it.core import load_records, save_records
    from vlm_it.data import prepare_rows
    from vlm_it.tiny import make_tiny_model, make_toy_data
    from vlm_it.train import TrainConfig, load_rows
    tmp = Path(tempfile.mkdtemp())
    proc = AutoProcessor.from_pretrained(make_tiny_model(tmp/"tiny", arch="llava"))
    toy = load_records(make_toy_data(tmp/"data", n=36))
    data = save_records([{**toy[i % len(toy)], "id": f"rec-{i}"} for i in range(n)], tmp/"data/big.json")
    row = {"mode": "prepare", "records": n, "data_mb": round(data.stat().st_size / 1e6, 1)}
    t0 = time.perf_counter()
    rows, _ = prepare_rows(load_records(data), proc, data.parent, 256)
    ds = Dataset.from_list(rows); ds[len(ds) - 1]
    before = time.perf_counter() - t0
    out = [{**row, "path": "before: prepare_rows loop + from_list", "num_proc": 1, "seconds": round(before, 2),
            "records_per_s": round(n / before)}]
    for num_proc in (1, 2):
        cfg = TrainConfig(input=str(data), max_length=256, num_proc=num_proc, prepared_cache=str(tmp/f"cache-{num_proc}"))
        times = []
        for run in ("first run (prepare + write cache)", "second run (cached)"):
            t0 = time.perf_counter()
            ds, bad = load_rows(cfg, proc); ds[len(ds) - 1]
            times.append(time.perf_counter() - t0)
            assert len(ds) == n and not bad
            out.append({**row, "path": run, "num_proc": num_proc, "seconds": round(times[-1], 3),
                        "records_per_s": round(n / times[-1])})
        out[-1]["cached_speedup"] = f"{times[0] / times[1]:.0f}x"
        assert ds.to_list()[:50] == rows[:50]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["cpu", "memory", "gpu", "lengths", "loss", "prepare", "all"], default="all")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run (after 2 warm-up steps)")
    p.add_argument("--shapes", choices=["7b", "mid", "tiny"], default="7b",
                   help="GPU mode: LLaVA-1.5-7B shapes; mid (a 170M-parameter LLaVA) or tiny to run the comparison on CPU")
    p.add_argument("--image_size", type=int, default=None, help="GPU mode: source image side in pixels (default 336 for LLaVA-1.5, 576 image tokens; 448 for Qwen2.5-VL, 256)")
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--records", type=int, default=50_000, help="prepare mode: how many records")
    p.add_argument("--skip_trl", action="store_true")
    p.add_argument("--model", choices=["llava", "qwen2_5_vl"], default="llava", help="lengths and GPU modes: LLaVA-1.5 or Qwen2.5-VL shapes")
    p.add_argument("--mix", choices=["image", "text"], default="image", help="lengths mode: every sample with an image, or three in four text-only")
    p.add_argument("--samples", type=int, default=24, help="lengths mode: how many samples")
    p.add_argument("--runs", default=",".join(LENGTH_RUNS), help=f"lengths mode: which runs, of {','.join(LENGTH_RUNS)}")
    p.add_argument("--bf16", action="store_true", help="memory mode on CPU: train with bf16 autocast and a bf16 compute dtype, as a GPU run does")
    a = p.parse_args(argv)
    import torch
    rows = []
    if a.mode in ("cpu", "all"): rows += bench_cpu(a.steps)
    if a.mode in ("memory", "all"): rows += bench_memory(a.seq_len, a.bf16)
    if a.mode == "prepare": rows += bench_prepare(a.records)
    if a.mode == "lengths":
        if torch.cuda.is_available() or a.shapes != "7b": rows += bench_lengths(a.shapes, a.seq_len, n=a.samples, model=a.model, mix=a.mix, runs=a.runs.split(","))
        else: print("lengths mode with 7B shapes needs CUDA (use --shapes mid on CPU).")
    if a.mode == "loss": rows += bench_loss(a.seq_len, a.steps)
    if a.mode in ("gpu", "all"):
        if torch.cuda.is_available() or a.shapes != "7b":
            rows += bench_gpu(a.shapes, a.steps, a.image_size or (336 if a.model == "llava" else 448), a.seq_len, a.skip_trl, a.model)
        else: print("GPU mode skipped: CUDA is not available (use --shapes tiny or mid to run its code path on CPU).")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    print(f"device: {device}")
    if not rows: return
    print(_table(rows))
    tag = f"-{a.model}-{a.mix}-{a.shapes}" if a.mode == "lengths" else f"-{a.model}-{a.shapes}" if a.mode == "gpu" else ""
    path = Path(str(RESULTS).format(mode=a.mode + tag + ("-bf16" if a.bf16 else "")))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=2)); os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
