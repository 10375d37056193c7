"""Engine probe: token agreement, speed and energy of eager vs graph (and compiled) decode, and what
the attention kernel does to graph decode at large batch. One GPU, one process, NVML counter windows.

    python experiments/engines/probe_engines.py --out DIR [--model Mistral-7B] [--quick]

For every (quantization, engine, attention, batch) case it loads the model once per quantization,
checks the engine's greedy tokens against generate() (ecosweep.workload.engines.check_tokens), and
measures windows of whole calls (>= --window-s seconds, CUDA synchronised at both edges) with
the NVML energy counter of the GPU, after an idle window with the context alive. It also profiles
one uncaptured decode step per attention implementation at the largest batch (torch.profiler,
CUDA kernel time by kernel name). Writes probe.json and prints one line per case. This is a probe
for choosing defaults, not the study protocol: studies run through `python -m ecosweep`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def settings(model: str, quantization: str, engine: str, attn: str | None):
    from ecosweep.config.compose import compose_settings

    overrides = [f"model={model}", f"quantization={quantization}", f"engine={engine}"]
    overrides.append(f"engine.attn_implementation={attn if attn else 'null'}")
    return compose_settings(overrides)


class Energy:
    """NVML total-energy counter of GPU 0 (mJ), or nothing on a CPU."""

    def __init__(self) -> None:
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.name = pynvml.nvmlDeviceGetName(self.handle)
            self.uuid = pynvml.nvmlDeviceGetUUID(self.handle)
        except Exception:
            self.name, self.uuid = "cpu", None

    def joules(self) -> float:
        if self.handle is None:
            return float("nan")
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0


def window(call, min_s: float, meter: Energy, sync) -> Dict[str, float]:
    sync()
    e0, t0 = meter.joules(), time.perf_counter()
    calls = tokens = 0
    while True:
        tokens += call()
        calls += 1
        if time.perf_counter() - t0 >= min_s:
            break
    sync()
    seconds, energy = time.perf_counter() - t0, meter.joules() - e0
    return {"calls": calls, "tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds,
            "power_w": energy / seconds, "j_per_1k_tok": 1000 * energy / tokens}


def profile_step(workload: Any, steps: int = 3) -> List[Dict[str, Any]]:
    """CUDA time by kernel over ``steps`` uncaptured decode steps (after a prefill)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        workload._prefill()
        workload._decode_step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                workload._decode_step()
            torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t:
            rows.append({"kernel": e.key[:120], "calls_per_step": e.count / steps, "us_per_step": t / steps})
    return sorted(rows, key=lambda r: -r["us_per_step"])[:15]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="Mistral-7B")
    ap.add_argument("--quantizations", default="fp16,nf4,int8_pure")
    ap.add_argument("--batches", default="1,64", help="batch sizes; the largest gets the attention comparison")
    ap.add_argument("--input-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=128)
    ap.add_argument("--window-s", type=float, default=4.0)
    ap.add_argument("--compiled-model", default="", help="also run engine=compiled on this model (fp16, nf4)")
    ap.add_argument("--token-check-models", default="", help="comma-separated: fp16 token check at batch 1 only")
    ap.add_argument("--uncaptured-check", action="store_true",
                    help="also check the same loop without the CUDA graph (tells capture from numerics)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    from ecosweep.run.worker import quiet_libraries
    from ecosweep.workload.engines import build_workload, engine_facts
    from ecosweep.workload.generation import FixedLengthGeneration
    from ecosweep.workload.models import load_model
    from ecosweep.workload.token_check import check_tokens, tolerance_for

    quiet_libraries()
    cuda = torch.cuda.is_available()
    device = "cuda:0" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    meter = Energy()
    results: Dict[str, Any] = {"device": meter.name, "gpu_uuid": meter.uuid, "torch": torch.__version__,
                               "cases": [], "profiles": {}, "token_checks": []}
    import transformers

    results["transformers"] = transformers.__version__
    batches = [int(b) for b in args.batches.split(",")]

    def case(label: str, workload: Any, **meta: Any) -> None:
        workload.generate()  # warm-up (and capture)
        workload.generate()
        r = {"case": label, **meta, **engine_facts(workload), **window(workload.generate, args.window_s, meter, sync)}
        results["cases"].append(r)
        print(f"{label:55s} {r['engine_effective']:18s} {r['attn_implementation']:14s} "
              f"{r['tok_s']:8.1f} tok/s {r['power_w']:6.1f} W {r['j_per_1k_tok']:8.1f} J/1k", flush=True)

    def save() -> None:
        (args.out / "probe.json").write_text(json.dumps(results, indent=1, default=str))

    # idle power with a context alive
    torch.zeros(1, device=device)
    time.sleep(1.0)
    e0, t0 = meter.joules(), time.perf_counter()
    time.sleep(3.0)
    results["idle_w"] = (meter.joules() - e0) / (time.perf_counter() - t0)
    print(f"idle with context: {results['idle_w']:.1f} W on {meter.name} {meter.uuid}", flush=True)

    for q in args.quantizations.split(","):
        t = time.perf_counter()
        s = settings(args.model, q, "graph", "ecosweep_sdpa")
        loaded = load_model(s, device)
        print(f"loaded {args.model} {q} in {time.perf_counter() - t:.1f} s", flush=True)
        model = loaded.model

        def shape(bs: int, model: Any = model, vocab_size: int = loaded.vocab_size) -> Dict[str, Any]:
            return dict(model=model, vocab_size=vocab_size, batch_size=bs, input_tokens=args.input_tokens,
                        output_tokens=args.output_tokens, seed=0, device=device)

        # token check at batch 1 (and 64 for fp16), captured
        for bs in ([1, batches[-1]] if q == "fp16" else [1]):
            w = build_workload(s.engine, **shape(bs))
            t = time.perf_counter()
            chk = check_tokens(w, FixedLengthGeneration(**shape(bs)), tolerance_for(s.quantization.dtype,
                                                                                     s.quantization.method))
            results["token_checks"].append({"model": args.model, "quantization": q, "batch_size": bs,
                                            "engine_effective": w.engine_effective, **chk.__dict__,
                                            "passed": chk.passed, "seconds": time.perf_counter() - t})
            print(f"token check {q} bs{bs} {w.engine_effective}: {chk}", flush=True)
            if args.uncaptured_check and cuda:  # the same loop without the graph: capture vs numerics
                from ecosweep.workload.graph_decode import GraphDecodeGeneration

                plain = GraphDecodeGeneration(**shape(bs), capture=False)
                chk2 = check_tokens(plain, FixedLengthGeneration(**shape(bs)), chk.tolerance_sd)
                results["token_checks"].append({"model": args.model, "quantization": q, "batch_size": bs,
                                                "engine_effective": "graph_uncaptured_on_gpu", **chk2.__dict__,
                                                "passed": chk2.passed})
                print(f"token check {q} bs{bs} uncaptured on the GPU: {chk2}", flush=True)
                del plain
            del w
            torch.cuda.empty_cache() if cuda else None
        save()
        for bs in batches:
            model.set_attn_implementation("sdpa")  # what engine=eager runs: the checkpoint's default
            eager = FixedLengthGeneration(**shape(bs))
            case(f"{args.model} {q} bs{bs} eager", eager, quantization=q, batch_size=bs, engine="eager")
            del eager
            model.set_attn_implementation("ecosweep_sdpa")
            graph = build_workload(s.engine, **shape(bs))
            case(f"{args.model} {q} bs{bs} graph", graph, quantization=q, batch_size=bs, engine="graph")
            if cuda and bs == batches[-1] and q == "fp16":
                results["profiles"][f"{q} bs{bs} ecosweep_sdpa"] = profile_step(graph)
            del graph
            if bs == batches[-1] and q == "fp16":
                model.set_attn_implementation("sdpa")  # transformers' own sdpa over the static cache
                stock = build_workload(s.engine, **shape(bs))
                case(f"{args.model} {q} bs{bs} graph (stock sdpa)", stock, quantization=q, batch_size=bs,
                     engine="graph")
                if cuda:
                    results["profiles"][f"{q} bs{bs} sdpa"] = profile_step(stock)
                del stock
                model.set_attn_implementation("ecosweep_sdpa")
            torch.cuda.empty_cache() if cuda else None
            save()
        del model, loaded
        torch.cuda.empty_cache() if cuda else None

    for name in filter(None, args.token_check_models.split(",")):
        s = settings(name, "fp16", "graph", "ecosweep_sdpa")
        loaded = load_model(s, device)
        shape1 = dict(model=loaded.model, vocab_size=loaded.vocab_size, batch_size=1, input_tokens=args.input_tokens,
                      output_tokens=args.output_tokens, seed=0, device=device)
        w = build_workload(s.engine, **shape1)
        chk = check_tokens(w, FixedLengthGeneration(**shape1), tolerance_for("float16", "none"))
        results["token_checks"].append({"model": name, "quantization": "fp16", "batch_size": 1,
                                        "engine_effective": w.engine_effective, **chk.__dict__, "passed": chk.passed})
        print(f"token check {name} fp16 bs1 {w.engine_effective}: {chk}", flush=True)
        del w, loaded
        torch.cuda.empty_cache() if cuda else None
        save()

    if args.compiled_model:
        for q in ("fp16", "nf4"):
            s = settings(args.compiled_model, q, "compiled", None)
            loaded = load_model(s, device)
            w = build_workload(s.engine, model=loaded.model, vocab_size=loaded.vocab_size, batch_size=1,
                               input_tokens=args.input_tokens, output_tokens=args.output_tokens, seed=0,
                               device=device)
            t = time.perf_counter()
            w.generate()
            first = time.perf_counter() - t
            case(f"{args.compiled_model} {q} bs1 compiled", w, quantization=q, batch_size=1, engine="compiled",
                 first_call_s=first, note=getattr(w, "compile_note", None))
            del w, loaded
            torch.cuda.empty_cache() if cuda else None
            save()
    for name, rows in results["profiles"].items():
        print(f"\nprofile {name} (us per decode step):")
        for r in rows[:10]:
            print(f"  {r['us_per_step']:9.1f} us  x{r['calls_per_step']:5.1f}  {r['kernel']}")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
