"""LLM.int8() weights quantized where they are (``workload.int8_in_place``): the same int8 weights and scales as
transformers' round trip through the host, its loader restored afterwards.

There is no GPU here, so the tests let the host stand for "a device the weights were drawn on"
(``HOST_DEVICES``): the code that runs is the one a GPU runs, on real bitsandbytes kernels."""

from __future__ import annotations

import pytest

from ecosweep.cells import to_settings
from ecosweep.workload import int8_in_place
from ecosweep.workload.models import load_model

from conftest import compose


def settings(*overrides):
    return to_settings(compose(["hardware=cpu", *overrides]))


def _int8_layers(model):
    return {name: module for name, module in model.named_modules() if type(module).__name__ == "Linear8bitLt"}


@pytest.mark.parametrize("quantization", ["int8_pure", "int8"])
def test_in_place_quantization_gives_the_round_trip_s_weights_and_scales(quantization, monkeypatch):
    import torch
    from transformers.integrations import bitsandbytes as hf_bitsandbytes

    original = hf_bitsandbytes.Bnb8bitQuantize.convert
    round_trip = _int8_layers(load_model(settings(f"quantization={quantization}"), "cpu").model)

    calls = []
    real = int8_in_place.quantize_on_device
    monkeypatch.setattr(int8_in_place, "HOST_DEVICES", ("meta",))  # the host's weights stand for a GPU's
    monkeypatch.setattr(int8_in_place, "quantize_on_device", lambda t, like: calls.append(t.shape) or real(t, like))
    in_place = _int8_layers(load_model(settings(f"quantization={quantization}"), "cpu").model)

    assert len(calls) == len(round_trip) > 0  # every int8 weight went the in-place way
    assert hf_bitsandbytes.Bnb8bitQuantize.convert is original  # the loader is restored
    assert in_place.keys() == round_trip.keys()
    for name, layer in round_trip.items():
        here = in_place[name]
        assert here.weight.dtype == torch.int8 and here.weight.data.equal(layer.weight.data), name
        assert here.weight.SCB.equal(layer.weight.SCB), name
        assert here.weight.CB.equal(here.weight.data)
        assert type(here.weight) is type(layer.weight) and here.weight.requires_grad is False
        assert here.state.threshold == layer.state.threshold


def test_host_weights_keep_transformers_own_path():
    """Weights on the host (a checkpoint's, or a CPU cell's) never take the in-place path."""
    from transformers.integrations import bitsandbytes as hf_bitsandbytes

    original = hf_bitsandbytes.Bnb8bitQuantize.convert
    with int8_in_place.int8_quantized_in_place() as active:
        assert active and hf_bitsandbytes.Bnb8bitQuantize.convert is not original
        loaded = load_model(settings("quantization=int8_pure"), "cpu")
    assert hf_bitsandbytes.Bnb8bitQuantize.convert is original
    assert _int8_layers(loaded.model)


def test_the_loader_is_restored_when_the_load_fails():
    from transformers.integrations import bitsandbytes as hf_bitsandbytes

    original = hf_bitsandbytes.Bnb8bitQuantize.convert
    with pytest.raises(RuntimeError, match="load failed"):
        with int8_in_place.int8_quantized_in_place():
            raise RuntimeError("load failed")
    assert hf_bitsandbytes.Bnb8bitQuantize.convert is original
