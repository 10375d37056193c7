"""torchao precisions: refused with a reason where they cannot run, part of the cell id, and the kernel
path a cell took recorded in its rows (on the CPU, where torchao's int8 and fp8 weight-only run)."""

from __future__ import annotations

import importlib.util

import pytest

from ecosweep.cells import cell_id, measured_identity, plan_cells, to_settings
from ecosweep.config.validate import validate_study
from ecosweep.errors import ConfigError

from conftest import compose

needs_torchao = pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao not installed")


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", *overrides]))


def test_precisions_that_cannot_run_here_are_refused_with_the_reason(monkeypatch):
    with pytest.raises(ConfigError, match="quantization=ao_fp8 .torchao fp8. runs on CUDA GPUs only"):
        plan_cells([compose(["hardware=cpu", "quantization=ao_fp8"])])
    fp8_on_a100 = validate_study(to_settings(compose(["hardware=a800", "quantization=ao_fp8_weight_only"])))
    assert any("needs CUDA compute capability >= 8.9" in p for p in fp8_on_a100)
    assert any("torchao_type='int3' is not a valid choice" in p
               for p in validate_study(settings("quantization=ao_int8_weight_only", "quantization.torchao_type=int3")))
    assert any("sets torchao_type but its method is 'bnb_8bit'" in p
               for p in validate_study(settings("quantization=int8_pure", "+quantization.torchao_type=fp8")))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    missing = validate_study(settings("quantization=ao_int8_dynamic"))
    assert len(missing) == 1 and "needs torchao, which is not installed: pip install -e '.[torchao]'" in missing[0]


def test_the_backend_and_its_precision_are_in_the_cell_id():
    ids = {q: cell_id(settings(f"quantization={q}")) for q in ("int8_pure", "ao_int8_weight_only", "ao_int8_dynamic")}
    assert len(set(ids.values())) == 3
    # cells of the other backends keep the ids they had before torchao_type existed
    assert "torchao_type" not in measured_identity(settings())["quantization"]
    assert measured_identity(settings("quantization=ao_fp8_weight_only"))["quantization"]["torchao_type"] == "fp8_weight_only"


@needs_torchao
@pytest.mark.slow
@pytest.mark.parametrize("quantization,path,fallback", [
    ("ao_int8_weight_only", "torchao Int8Tensor, not compiled", True),
    ("ao_fp8_weight_only", "torchao Float8Tensor, not compiled", True),
    ("int8_pure", "bitsandbytes Linear8bitLt, not compiled", False),
])
def test_rows_record_the_kernel_path_the_cell_took(quantization, path, fallback):
    from ecosweep.run.worker import execute_cell

    cell = plan_cells([compose(["hardware=cpu", f"quantization={quantization}", "measurement=quick",
                                "repetitions=2", "warmup=1", "input_tokens=8", "output_tokens=4"])])[0]
    outcome = execute_cell(cell)
    assert outcome.status == "ok", outcome.error
    for row in outcome.rows:
        assert row["quant_kernel_path"] == path and row["quant_fallback"] is fallback
        assert row["fidelity_kl_nats_mean"] > 0  # quantized against the fp32 reference of the same weights


def test_int8_dynamic_compiled_at_small_batch_is_refused_on_a_gpu_before_the_model_loads():
    """torch._int_mm (what compiled torchao int8 dynamic layers call) refuses 16 rows or fewer on CUDA: every
    such cell of experiments/int8_alternatives/h100x4_2026-11-27 failed after loading; now validation says so
    for a GPU profile, and the cell itself (hardware=auto) before its model loads."""
    from ecosweep.run.worker import check_device_runs

    def problems(*overrides):
        return validate_study(to_settings(compose(["quantization=ao_int8_dynamic", *overrides])))

    refused = problems("hardware=h100", "engine=compiled", "batch_size=16")
    assert len(refused) == 1 and "batch_size=16 cannot decode on a CUDA GPU" in refused[0]
    assert "needs more than 16 rows" in refused[0] and "engine=eager or engine=graph" in refused[0]
    assert problems("hardware=h100", "engine=compiled", "batch_size=17") == []
    assert problems("hardware=h100", "engine=eager", "batch_size=1") == []
    assert problems("hardware=cpu", "engine=compiled", "batch_size=1") == []   # transformers compiles on GPUs only
    assert problems("hardware=auto", "engine=compiled", "batch_size=1") == []  # device unknown until the cell runs
    cell = to_settings(compose(["quantization=ao_int8_dynamic", "hardware=auto", "engine=compiled", "batch_size=1"]))
    h100 = {"device": "cuda", "compute_capability": "9.0", "device_name": "NVIDIA H100 80GB HBM3"}
    with pytest.raises(RuntimeError, match="batch_size=1 cannot decode on a CUDA GPU"):
        check_device_runs(cell, h100)
    check_device_runs(cell, {"device": "cpu"})  # runs (uncompiled) on a CPU
    check_device_runs(to_settings(compose(["quantization=ao_int8_weight_only", "hardware=auto", "engine=compiled",
                                           "batch_size=1"])), h100)


def test_the_report_warns_on_a_fallback_and_on_fp8_under_eager():
    """int8 weight-only not compiled is torchao's slow path (quant_fallback); fp8 under eager generate() takes its
    fast kernel but launches its activation quantization kernel by kernel: on H100 6.6 tok/s against fp16's 32.6
    (experiments/int8_alternatives/h100x4_2026-11-27c). Both are warned about; fp8 from a CUDA graph is not."""
    import pandas as pd

    from ecosweep.analysis import caveats

    def row(quantization, engine, path, fallback):
        return {"hardware": "H100", "model": "m", "quantization": quantization, "engine": engine,
                "engine_effective": engine, "batch_size": 1, "raw": True, "quant_kernel_path": path,
                "quant_fallback": fallback, "energy_j_per_1k_tok_cv_pct": 1.0}

    configs = pd.DataFrame([row("ao_int8_weight_only", "eager", "torchao Int8Tensor, not compiled", True),
                            row("ao_fp8", "eager", "torchao Float8Tensor, not compiled", False),
                            row("ao_fp8", "graph", "torchao Float8Tensor, not compiled", False),
                            row("ao_fp8", "compiled", "torchao Float8Tensor, compiled", False)])
    warnings = caveats.warnings_for(configs)
    fallback = [w for w in warnings if w.startswith("Fallback:")]
    launch_bound = [w for w in warnings if w.startswith("Launch-bound:")]
    assert len(fallback) == 1 and "m ao_int8_weight_only bs1 ran torchao Int8Tensor, not compiled" in fallback[0]
    assert len(launch_bound) == 1 and "m ao_fp8 bs1 ran torchao Float8Tensor, not compiled under eager" in launch_bound[0]
