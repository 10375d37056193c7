"""The requests of a served stream (``scenario=serving``): their lengths, arrival times and prompts, all seeded, so
that one repetition's stream is the same in every run and every precision.

Lengths come from a named distribution (``serving.lengths``) or a JSONL file; arrivals are all at once, Poisson or
closed-loop (``serving.arrival``; a closed-loop stream has no schedule: the server's completions pace it). Nothing
here touches a model or a device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from ecosweep.config.lengths_file import MIN_TOKENS, LengthsFileError, read_lengths_file

# lengths=chat: log-normal input and output lengths with these means (tokens). The means are the ShareGPT averages
# as the vLLM paper reports them (Kwon et al., "Efficient Memory Management for Large Language Model Serving with
# PagedAttention", SOSP 2023: ShareGPT prompts average 161 tokens, its outputs 338); the log-normal spreads are
# ecosweep's assumption (not fitted), chosen for a long right tail with medians near half the means.
CHAT_MEAN_INPUT_TOKENS = 161.0
CHAT_MEAN_OUTPUT_TOKENS = 338.0
CHAT_SIGMA_INPUT = 1.0
CHAT_SIGMA_OUTPUT = 0.8


@dataclass(frozen=True)
class RequestSpec:
    """One request of a stream: its id, lengths (tokens, exact: EOS is suppressed) and, for scheduled arrivals,
    when it is sent (seconds after the stream starts; 0 for all_at_once, None for closed_loop)."""

    request_id: str
    input_tokens: int
    output_tokens: int
    arrival_s: Optional[float]
    index: int = 0  # its prompt's draw (``prompt_ids``)


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    return rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n)  # E[X] = mean


def request_lengths(kind: str, n: int, input_tokens: int, output_tokens: int, seed: int, spread: float = 0.5,
                    lengths_file: Optional[str] = None,
                    max_total_tokens: Optional[int] = None) -> List[Tuple[int, int]]:
    """``n`` (input, output) token pairs from distribution ``kind`` (``serving.lengths``), seeded: fixed, uniform
    (within +/- ``spread`` of the means), chat (log-normal, module constants) or file (its pairs in order, cycled).
    Each pair is clipped so that input + output fits ``max_total_tokens`` (the model's context)."""
    rng = np.random.default_rng([seed, 7919])  # a stream of its own: prompts and weights use the seed too
    if kind == "fixed":
        pairs = [(input_tokens, output_tokens)] * n
    elif kind == "uniform":
        def draw(mean: int) -> np.ndarray:
            low, high = max(MIN_TOKENS, round(mean * (1 - spread))), max(MIN_TOKENS, round(mean * (1 + spread)))
            return rng.integers(low, high + 1, n)
        pairs = list(zip(draw(input_tokens).tolist(), draw(output_tokens).tolist()))
    elif kind == "chat":
        ins = _lognormal(rng, CHAT_MEAN_INPUT_TOKENS, CHAT_SIGMA_INPUT, n)
        outs = _lognormal(rng, CHAT_MEAN_OUTPUT_TOKENS, CHAT_SIGMA_OUTPUT, n)
        pairs = [(max(MIN_TOKENS, round(i)), max(MIN_TOKENS, round(o))) for i, o in zip(ins, outs)]
    elif kind == "file":
        if lengths_file is None:
            raise LengthsFileError("serving.lengths=file needs serving.lengths_file.")
        listed = read_lengths_file(lengths_file)
        pairs = [listed[i % len(listed)] for i in range(n)]
    else:
        raise ValueError(f"unknown length distribution {kind!r}")
    if max_total_tokens:
        pairs = [_fit(i, o, max_total_tokens) for i, o in pairs]
    return [(int(i), int(o)) for i, o in pairs]


def _fit(input_tokens: int, output_tokens: int, total: int) -> Tuple[int, int]:
    """Shorten the longer side until the request fits ``total`` tokens of context."""
    while input_tokens + output_tokens > total:
        if input_tokens >= output_tokens:
            input_tokens = max(MIN_TOKENS, total - output_tokens, input_tokens // 2)
        else:
            output_tokens = max(MIN_TOKENS, total - input_tokens, output_tokens // 2)
    return input_tokens, output_tokens


def arrival_times_s(kind: str, n: int, rate_rps: float, seed: int) -> List[Optional[float]]:
    """When each of ``n`` requests is sent, seconds after the stream starts: 0 for all_at_once, cumulative
    exponential gaps of mean 1 / ``rate_rps`` for poisson (the first at its first gap), None for closed_loop."""
    if kind == "all_at_once":
        return [0.0] * n
    if kind == "poisson":
        rng = np.random.default_rng([seed, 104729])
        return np.cumsum(rng.exponential(1.0 / rate_rps, n)).tolist()
    if kind == "closed_loop":
        return [None] * n
    raise ValueError(f"unknown arrival process {kind!r}")


def request_stream(arrival: str, lengths: str, n: int, input_tokens: int, output_tokens: int, seed: int,
                   rate_rps: float = 1.0, spread: float = 0.5, lengths_file: Optional[str] = None,
                   max_total_tokens: Optional[int] = None) -> List[RequestSpec]:
    """The ``n`` requests of one repetition, in the order they are sent."""
    pairs = request_lengths(lengths, n, input_tokens, output_tokens, seed, spread, lengths_file, max_total_tokens)
    times = arrival_times_s(arrival, n, rate_rps, seed)
    return [RequestSpec(f"req{i:05d}", i_tokens, o_tokens, t, i) for i, ((i_tokens, o_tokens), t)
            in enumerate(zip(pairs, times))]


def prompt_ids(vocab_size: int, length: int, seed: int, index: int) -> List[int]:
    """Request ``index``'s synthetic prompt: ``length`` token ids drawn from the vocabulary (ids below 4 left out:
    special tokens), the same for every precision of a seed."""
    rng = np.random.default_rng([seed, 15485863, index])
    return rng.integers(4, vocab_size, length).tolist()
