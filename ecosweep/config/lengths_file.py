"""A served stream's own request lengths (``serving.lengths=file``): a JSONL file of (input_tokens, output_tokens)
pairs, read by validation before anything runs and by the stream that sends them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

MIN_TOKENS = 2  # a request has a prompt of at least this and asks at least this many tokens


class LengthsFileError(ValueError):
    """A ``serving.lengths_file`` that cannot be read as (input_tokens, output_tokens) pairs."""


def read_lengths_file(path: str) -> List[Tuple[int, int]]:
    """The (input_tokens, output_tokens) pairs of a JSONL file, one object per line; raises
    :class:`LengthsFileError` naming the line that is not one."""
    pairs: List[Tuple[int, int]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LengthsFileError(f"serving.lengths_file={path!r} cannot be read: {exc.strerror or exc}.") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pair = (int(record["input_tokens"]), int(record["output_tokens"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise LengthsFileError(
                f"serving.lengths_file={path!r}, line {number}: {line[:80]!r} is not a JSON object with integer "
                "input_tokens and output_tokens (e.g. {\"input_tokens\": 128, \"output_tokens\": 64}).") from exc
        if min(pair) < MIN_TOKENS:
            raise LengthsFileError(f"serving.lengths_file={path!r}, line {number}: lengths {pair} are below "
                                   f"{MIN_TOKENS} tokens.")
        pairs.append(pair)
    if not pairs:
        raise LengthsFileError(f"serving.lengths_file={path!r} holds no (input_tokens, output_tokens) pair.")
    return pairs
