"""Load time of a random-weight model: built in memory (what cells do) against the checkpoint path
ecosweep used before 2026-11-27 (build once, save_pretrained, then every cell from_pretrained from disk).

    python experiments/benchmarks/load_paths.py --out DIR [--model Mistral-7B] [--quantizations fp16,nf4]
                                                [--device cuda:0] [--repeats 2]

For each quantization: the one-time checkpoint build (from_config + save_pretrained), the checkpoint
load a cell then paid (from_pretrained from the folder; the first read may come from the page cache,
as it did for every cell after the first), and the in-memory load (build_random_model + from_pretrained
with the state dict), and the tensor-by-tensor path of cells over several GPUs, through host memory
(``random_state_dict``) and drawn as the loader asks for each (``lazy_random_state_dict``). Each load is
timed ``--repeats`` times in this process, synchronised on CUDA, and the two paths' weights are compared
tensor by tensor (they must be bit-identical). Writes
load_paths.json and prints one line per case. CPU works too (``--device cpu``; fp32 instead of fp16).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def same_weights(a: Any, b: Any) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].equal(sb[k]) for k in sa)


def measure_case(s: Any, folder: Path, device: str, repeats: int, sync: Callable[[], None]) -> Dict[str, Any]:
    """One quantization: the checkpoint of its dtype built and saved if ``folder`` has none yet (one per dtype,
    as the cache kept), then ``repeats`` loads from that checkpoint and in memory, and whether they agree."""
    import torch
    import transformers

    from ecosweep.workload.placement import PER_TENSOR
    from ecosweep.workload.quantization import bnb_config, torch_dtype
    from ecosweep.workload.random_weights import build_random_model, load_random_model

    q = s.quantization
    case: Dict[str, Any] = {"quantization": q.name, "dtype": q.dtype, "method": q.method}
    if not folder.exists():
        def build_and_save() -> None:
            build_random_model(s.model, q.dtype, s.seed, device).save_pretrained(folder, safe_serialization=True)
        case["checkpoint_build_s"], _ = timed(build_and_save, sync)
    from_disk: List[float] = []
    in_memory: List[float] = []
    per_tensor: List[float] = []
    per_tensor_lazy: List[float] = []
    for _ in range(repeats):
        seconds, disk_model = timed(lambda: transformers.AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch_dtype(q.dtype), quantization_config=bnb_config(q),
            device_map={"": device}, local_files_only=True), sync)
        from_disk.append(seconds)
        seconds, memory_model = timed(lambda: load_random_model(s.model, q.dtype, s.seed, device, bnb_config(q)), sync)
        in_memory.append(seconds)
        case["bit_identical"] = same_weights(disk_model, memory_model)
        del disk_model, memory_model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        # the path of cells over several GPUs (or too large for one): drawn tensor by tensor, into host memory
        # first, and as the loader asks for each (straight onto the device)
        for lazy, times in ((False, per_tensor), (True, per_tensor_lazy)):
            seconds, _ = timed(lambda lazy=lazy: load_random_model(s.model, q.dtype, s.seed, device, bnb_config(q),
                                                                   built_on=PER_TENSOR, lazy=lazy), sync)
            times.append(seconds)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    case.update(checkpoint_load_s=from_disk, in_memory_load_s=in_memory, per_tensor_load_s=per_tensor,
                per_tensor_lazy_load_s=per_tensor_lazy,
                checkpoint_gb=sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 1e9)
    return case


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="Mistral-7B")
    ap.add_argument("--quantizations", default="fp16,nf4")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scratch", default=None, help="folder for the checkpoint (default: a temporary one)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers

    from ecosweep.config.compose import compose_settings

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    results: Dict[str, Any] = {"model": args.model, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                               "torch": torch.__version__, "transformers": transformers.__version__, "cases": []}
    scratch = Path(tempfile.mkdtemp(dir=args.scratch, prefix="ecosweep-load-paths-"))
    try:
        for name in args.quantizations.split(","):
            s = compose_settings([f"model={args.model}", f"quantization={name}"])
            case = measure_case(s, scratch / s.quantization.dtype, args.device, args.repeats, sync)
            results["cases"].append(case)
            print(f"{args.model} {name:10s} build+save {case.get('checkpoint_build_s', float('nan')):6.1f} s  "
                  f"from checkpoint {min(case['checkpoint_load_s']):6.1f} s  "
                  f"in memory {min(case['in_memory_load_s']):6.1f} s  tensor by tensor "
                  f"{min(case['per_tensor_load_s']):6.1f} s (via host) {min(case['per_tensor_lazy_load_s']):6.1f} s "
                  f"(lazily)  identical {case['bit_identical']}", flush=True)
            (args.out / "load_paths.json").write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
