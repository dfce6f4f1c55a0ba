"""Hiding secret values in text that corral shows (pure functions).

Bytes are masked with as many ``*`` as they had, so byte offsets in a log
stay true and a range read can be masked on its own: read the range widened
by the longest secret minus one on both sides, mask, cut the range back out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import BinaryIO

MASK_BYTE = b"*"


def encode(values: Sequence[str]) -> tuple[bytes, ...]:
    """Secret values as UTF-8, longest first, empty ones dropped."""
    return tuple(sorted({v.encode("utf-8") for v in values if v}, key=lambda b: (-len(b), b)))


def reach(values: Sequence[bytes]) -> int:
    """How far a secret can reach past a cut: the longest one's length minus one."""
    return max((len(v) for v in values), default=1) - 1


def mask_bytes(data: bytes, values: Sequence[bytes]) -> bytes:
    """``data`` with every occurrence of every value replaced by as many ``*``."""
    if not values or not data:
        return data
    out = bytearray(data)
    for value in values:
        start = data.find(value)
        while start >= 0:
            out[start : start + len(value)] = MASK_BYTE * len(value)
            start = data.find(value, start + 1)
    return bytes(out)


def mask_text(text: str, values: Sequence[str], mask: str = "********") -> str:
    """``text`` with every secret value replaced by ``mask`` (for messages and YAML)."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, mask)
    return text


def partial_tail(data: bytes, values: Sequence[bytes]) -> int:
    """Length of the longest end of ``data`` that begins some value: output a
    live tail must hold back until it knows whether the secret follows."""
    best = 0
    for value in values:
        for size in range(min(len(value) - 1, len(data)), best, -1):
            if data.endswith(value[:size]):
                best = size
                break
    return best


def masked_blocks(fh: BinaryIO, values: Sequence[bytes], block: int = 64 * 1024) -> Iterator[bytes]:
    """The rest of ``fh`` in masked blocks, catching secrets that straddle two blocks."""
    pad = reach(values)
    carry = b""
    while True:
        data = fh.read(block)
        if not data:
            if carry:
                yield mask_bytes(carry, values)
            return
        buf = mask_bytes(carry + data, values)
        if len(buf) > pad:
            cut = len(buf) - pad
            yield buf[:cut]
            carry = buf[cut:]
        else:
            carry = buf
