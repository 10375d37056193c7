"""Where a cell process's imports go on this host: each library a cell imports, timed by the code a cell times them
with (`ecosweep.run.worker.import_libraries`, the timing file's `imports_detail_s`); torch's custom-op
registrations counted and timed per namespace (on an H100 host a cProfile put 8.8 s in 147 calls of
`_register_to_dispatcher`, against about 1 ms each on a 2-core CPU host); Python's bytecode flags and its
`builtins.compile` calls; the functions that held the most time of their own. Measures no GPU work; run it after a
study, in a fresh process, with the study's environment (PYTHONPATH, PYTHONPYCACHEPREFIX):

    python3 experiments/device/import_probe.py [--model-type mistral] [--method bnb_4bit] \
        > outputs/<host>/logs/import_probe.txt
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import importlib
import io
import pstats
import sys
import time

from ecosweep.run.worker import import_libraries  # imports none of the libraries it times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="mistral", help="transformers model type whose module is imported")
    parser.add_argument("--method", default="bnb_4bit", help="quantization method whose library is imported "
                        "(bnb_4bit, bnb_8bit: bitsandbytes; torchao; none)")
    parser.add_argument("--top", type=int, default=25, help="functions listed by their own time")
    args = parser.parse_args()

    profile = cProfile.Profile()
    seconds: dict = {}
    profile.enable()
    start = time.perf_counter()
    importlib.import_module("torch")
    seconds["torch"] = time.perf_counter() - start
    profile.disable()

    # torch is in: count the custom ops the other libraries register, and the seconds each namespace takes
    from torch._library import custom_ops

    register = custom_ops.CustomOpDef._register_to_dispatcher
    count: collections.Counter = collections.Counter()
    spent: collections.Counter = collections.Counter()

    def timed_register(self, *a, **k):
        t = time.perf_counter()
        try:
            return register(self, *a, **k)
        finally:
            count[self._namespace] += 1
            spent[self._namespace] += time.perf_counter() - t

    custom_ops.CustomOpDef._register_to_dispatcher = timed_register
    profile.enable()
    seconds.update({name: s for name, s in import_libraries(args.model_type, args.method).items() if name != "torch"})
    start = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.init() is None
    seconds["torch.cuda.init"] = time.perf_counter() - start
    profile.disable()

    # with bytecode, a 2-core host's process made 689 calls (0.07 s); without, 4,047 (13.7 s): source compiled
    compiles = sum(stat[0] for func, stat in pstats.Stats(profile).stats.items()
                   if func[2] == "<built-in method builtins.compile>")
    print(f"bytecode: dont_write_bytecode {sys.flags.dont_write_bytecode}, pycache_prefix {sys.pycache_prefix}, "
          f"builtins.compile calls in this process {compiles}")
    print("seconds per import, in order:", ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()),
          f"(total {sum(seconds.values()):.2f} s, cuda {cuda})")
    print("custom ops registered after torch, per namespace (count, seconds; cProfile on):")
    for namespace, n in count.most_common():
        print(f"  {namespace}: {n}, {spent[namespace]:.3f}")
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
    print(text.getvalue())


if __name__ == "__main__":
    main()
