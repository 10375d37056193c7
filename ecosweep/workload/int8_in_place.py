"""LLM.int8() weights quantized on the device they are already on.

transformers' 8-bit loader (``integrations.bitsandbytes.Bnb8bitQuantize.convert``) moves every weight to the host
and back, because bitsandbytes' ``Int8Params`` quantizes a weight when it moves from the host to a GPU. A
checkpoint's weights come from the host anyway; a random-weight cell's are drawn on its GPU, so for a 7B model the
round trip copies 14.5 GB out and back: 12.5 s of a 13.3 s pure-int8 load on an H100 (2026-12-07, cProfile).

:func:`int8_quantized_in_place` quantizes a weight that is on a GPU where it is, with the call ``Int8Params``
makes on its way there (``_quantize``: the same fp16 tensor, the same ``int8_vectorwise_quant`` kernel on the same
device), so the int8 weights and scales are the ones the round trip gives. Weights on the host, ``Conv1D``
weights (transposed first by transformers) and fp16-weight int8 (``llm_int8_has_fp16_weight``) keep transformers'
own path. With a transformers that has no such loader step, nothing changes.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator

# Devices whose weights take transformers' own path (the host's quantize on their way to the GPU anyway)
HOST_DEVICES = ("cpu", "meta")


def _tensor(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _in_place_placeholder(model: Any, name: str, tensor: Any) -> Any:
    """The model's placeholder parameter for ``name`` when its weight is one this module quantizes where it is
    (see the module docstring), else None."""
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.quantizers_utils import get_module_from_name

    if model is None or tensor.device.type in HOST_DEVICES:
        return None
    try:  # transformers 5.17-5.25 key input_dict by parameter name; a loader that keys it otherwise keeps its path
        module, _ = get_module_from_name(model, name)
        placeholder = model.get_parameter_or_buffer(name)
    except (AttributeError, KeyError, ValueError):
        return None
    source = getattr(module, "source_cls", None)
    if isinstance(source, type) and issubclass(source, Conv1D):
        return None
    return None if getattr(placeholder, "has_fp16_weights", False) else placeholder


def quantize_on_device(tensor: Any, like: Any) -> Any:
    """``tensor`` (16-bit, on a GPU) as the ``Int8Params`` transformers' loader makes of it, quantized on its own
    device; ``like``: the model's placeholder parameter, whose attributes (``has_fp16_weights``, ...) it takes."""
    import bitsandbytes as bnb

    attributes = dict(like.__dict__)
    attributes.pop("SCB", None)
    return bnb.nn.Int8Params(tensor, requires_grad=False, **attributes)._quantize(tensor.device)


@contextmanager
def int8_quantized_in_place() -> Iterator[bool]:
    """While open, transformers' 8-bit loader quantizes GPU-resident weights in place (module docstring). Yields
    whether it could be set up (False: transformers' own path runs unchanged). The loader is always restored."""
    try:
        from transformers.integrations import bitsandbytes as hf_bitsandbytes

        step = hf_bitsandbytes.Bnb8bitQuantize
        original = step.convert
    except (ImportError, AttributeError):
        yield False
        return

    def convert(self: Any, input_dict: Dict[str, Any], *args: Any, **kwargs: Any) -> Dict[str, Any]:
        model = kwargs.get("model")
        placeholders = {name: _in_place_placeholder(model, name, _tensor(value)) for name, value in input_dict.items()}
        rest = {name: value for name, value in input_dict.items() if placeholders[name] is None}
        result = original(self, rest, *args, **kwargs) if rest else {}
        for name, like in placeholders.items():
            if like is not None:
                result[name] = quantize_on_device(_tensor(input_dict[name]), like)
        return result

    step.convert = convert
    try:
        yield True
    finally:
        step.convert = original
