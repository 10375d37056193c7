"""The decision table: Pareto front of energy, throughput and fidelity, with noise counted as a tie."""

from __future__ import annotations

import pandas as pd

from ecosweep.analysis.decision import decision_table


def config(quantization, energy, energy_sd, tok_s, kl, n=10, batch_size=1):
    return {"hardware": "H100", "model": "m", "engine": "eager", "batch_size": batch_size, "input_tokens": 128,
            "output_tokens": 128, "quantization": quantization,
            "energy_j_per_1k_tok_mean": energy, "energy_j_per_1k_tok_sd": energy_sd, "energy_j_per_1k_tok_n": n,
            "tok_s_mean": tok_s, "tok_s_sd": 1.0, "tok_s_n": n, "fidelity_kl_nats_mean": kl}


def test_front_dominated_and_ties():
    table = decision_table(pd.DataFrame([
        config("fp16", 100.0, 1.0, 50.0, 0.0),
        config("nf4", 80.0, 1.0, 40.0, 0.01),       # saves energy, slower, less faithful: a real trade-off
        config("int8", 120.0, 1.0, 30.0, 0.001),    # more energy, slower, less faithful than fp16
        config("bf16", 100.5, 5.0, 50.2, 0.0),      # inside the noise of fp16 everywhere: a tie, not dominated
    ])).set_index("quantization")
    assert table.on_front.to_dict() == {"fp16": True, "nf4": True, "int8": False, "bf16": True}
    assert table.dominated_by["int8"] == "fp16, bf16"
    why = table.why["int8"]
    assert why.startswith("against fp16: +20.0 % energy per token, -40.0 % tok/s, KL 0.001 vs 0 nats")
    assert table.criteria["fp16"] == "energy, tok/s, fidelity"


def test_without_fidelity_energy_and_speed_decide_and_groups_stay_apart():
    rows = [config("fp16", 100.0, 1.0, 50.0, None), config("nf4", 130.0, 1.0, 45.0, None),
            config("fp16", 30.0, 1.0, 400.0, None, batch_size=16), config("nf4", 25.0, 1.0, 300.0, None, batch_size=16)]
    table = decision_table(pd.DataFrame(rows))
    bs1 = table[table.batch_size == 1].set_index("quantization")
    bs16 = table[table.batch_size == 16].set_index("quantization")
    assert bs1.on_front.to_dict() == {"fp16": True, "nf4": False}
    assert bs1.why["nf4"] == "against fp16: +30.0 % energy per token, -10.0 % tok/s"
    assert bs16.on_front.all()  # batch 16: nf4 saves energy, fp16 is faster
    assert set(table.criteria) == {"energy, tok/s (no fidelity measured)"}
