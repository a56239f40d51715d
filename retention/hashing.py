"""The project's fixed hashes: the same bits on every machine and in every process (Python's hash() is salted).

`stable_hash` (FNV-1a 64 + MurmurHash3 finaliser) keys the holdout, message wordings and decision noise;
`keyed_hash` (SipHash under a 16-byte key) keys the demo data's names, zones and channels. Both are pinned by golden
tests: holdout membership and every logged propensity depend on their exact bits.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_FMIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


# stable hash

HASH_SPAN = 65_536
"""Strings `stable_hash` hashes at a time (its per-byte passes over them stay in the CPU's cache)."""


def stable_hash(strings) -> np.ndarray:
    """FNV-1a 64 over each string's UTF-8 bytes, then the MurmurHash3 finaliser: uint64, the same on every machine.

    Python's hash() is salted per process; this one is fixed, so the holdout and message wordings never drift.
    HASH_SPAN strings at a time, so the passes over each byte position stay in the CPU's cache at 10M ids.
    """
    data, starts, lengths = _utf8(strings)
    out = np.empty(len(starts), dtype=np.uint64)
    for s in range(0, len(starts), HASH_SPAN):
        out[s:s + HASH_SPAN] = _fnv_fmix(data, starts[s:s + HASH_SPAN], lengths[s:s + HASH_SPAN])
    return out


def _fnv_fmix(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`stable_hash` of the strings at `starts` (`lengths` bytes each) in `data`."""
    # longest first, so the strings that still have a byte at position j are a prefix: one numpy step per
    # position over those strings only (all n of them for ids of one width)
    order = np.argsort(lengths, kind="stable")[::-1]
    starts = starts[order]
    longer = np.searchsorted(-lengths[order], -np.arange(lengths.max(initial=0)))  # strings longer than j, per j
    h = np.full(len(order), _FNV_OFFSET)
    for j, k in enumerate(longer):
        live = h[:k]  # a view: the steps below work in place
        live ^= data[starts[:k] + j]
        live *= _FNV_PRIME
    # FNV's last bytes reach the high bits through one multiply only; the finaliser spreads every bit
    h ^= h >> np.uint64(33)
    h *= _FMIX[0]
    h ^= h >> np.uint64(33)
    h *= _FMIX[1]
    h ^= h >> np.uint64(33)
    out = np.empty_like(h)
    out[order] = h
    return out


def _utf8(strings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, start, length) of each string's UTF-8 encoding, read from an Arrow string array without copying."""
    arr = pa.array(pd.Series(strings, dtype="str"), pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("stable_hash: a string is missing")
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, np.int64, len(arr) + 1, arr.offset * 8)  # int64: a large_string array
    return np.frombuffer(data, np.uint8), offsets[:-1], np.diff(offsets)


def unit_interval(h: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats in [0, 1) using their top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def holdout_mask(customer_ids, share: float) -> np.ndarray:
    """True for the customers in the never-contacted holdout: a fixed `share` of ids, the same every day."""
    return unit_interval(stable_hash(customer_ids)) < share


def keyed_hash(ids, key: str) -> np.ndarray:
    """uint64 SipHash of each id under a 16-byte key: same value in every process, unlike hash()."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=key, categorize=False)


# decision noise

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_NOISE_CHUNK = 8192


def decision_noise(hashes: np.ndarray, ds: dt.date, draws: int) -> np.ndarray:
    """(n, draws) uniforms in (0, 1) keyed by (customer hash, ds): a customer's draw does not depend on row order.

    Column-major, so that each kind of draw reads one contiguous column.
    """
    day = np.full(1, ds.toordinal(), dtype=np.uint64) * _MIX[0]  # arrays wrap on overflow, as the hash wants
    step = np.arange(draws, dtype=np.uint64) * _MIX[1]
    u = np.empty((len(hashes), draws), order="F")
    for s in range(0, len(hashes), _NOISE_CHUNK):  # a chunk stays in cache through all the integer steps
        z = (hashes[s:s + _NOISE_CHUNK, None] ^ day) + step
        z ^= z >> np.uint64(30)  # SplitMix64 finaliser
        z *= _MIX[1]
        z ^= z >> np.uint64(27)
        z *= _MIX[2]
        z ^= z >> np.uint64(31)
        u[s:s + _NOISE_CHUNK] = z >> np.uint64(11)
    u += 0.5
    u /= 2.0**53
    return u
