"""Protobuf wire encoding of RetrieveCandidatesResponse candidates, vectorised with NumPy over a whole batch.

Building the response with protobuf's Python API adds the Candidate messages one by one, about 1 µs each: for
k = 100 that is more per call than gRPC's own work, and it ran on the event loop, the serving process's one
busy thread. Here the candidates of every response of a batch are laid out in one pass of NumPy gathers, in the
compute thread, from a table built once per model version: each item's `item_id` field, already encoded. The
other response fields (model name and version, truncated, request id) are encoded by protobuf and
concatenated after the candidates (a protobuf parser merges concatenated encodings of one message).
Responses that select display attributes take protobuf's own path.

protobuf has no batch encoder, so this part is written by hand. It follows the wire format of
protos/retrieval/v1/retrieval.proto: Candidate {1: item_id string, 2: score float, 3: rank int32}, each
candidate a length-delimited field 1 of RetrieveCandidatesResponse. Every field is written explicitly (a
score of 0.0 or rank 0 too, which parsers read as the same values); tests/service/test_wire.py checks the
bytes against protobuf's parser.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from service.item_index import arrow_ids, utf8_buffers

_LENGTH_DELIMITED_1 = 0x0A  # field 1, wire type 2: Candidate.item_id, RetrieveCandidatesResponse.candidates
_FLOAT_2 = 0x15  # field 2, wire type 5 (fixed32): Candidate.score
_VARINT_3 = 0x18  # field 3, wire type 0: Candidate.rank
_MAX_VARINT_BYTES = 3  # lengths and ranks below 2**21
_BUILD_CHUNK = 1 << 20  # items per gather while building the table (bounds its index arrays)


def varint(value: int) -> bytes:
    """The protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field_tag: int, payload: bytes) -> bytes:
    """One length-delimited field: its tag byte, the payload's length and the payload."""
    return bytes((field_tag,)) + varint(len(payload)) + payload


class CandidateEncoder:
    """Encodes the candidates (rows of the catalog, with scores) of many responses at once.

    Args:
        item_ids: [N] external item ids; row i is FAISS id i.
    """

    def __init__(self, item_ids: Sequence[str] | np.ndarray | pa.Array) -> None:
        # Built in chunks with NumPy from Arrow's UTF-8 buffers: a Python bytes object per item would cost about
        # 12 s and 0.5 GB of transient memory at 10M items (docs/benchmarks/large_catalog_serving.md).
        ids = arrow_ids(item_ids)
        offsets, data = utf8_buffers(ids)
        id_lengths = np.diff(offsets)
        if len(ids) and int(id_lengths.max()) + 8 >= 2 ** (7 * _MAX_VARINT_BYTES):
            raise ValueError(f"an item id is too long to encode ({int(id_lengths.max())} bytes)")
        prefix = 1 + _varint_length(id_lengths)  # the field tag and the id's length
        self._lengths = prefix + id_lengths
        self._starts = np.cumsum(self._lengths) - self._lengths
        self._blob = np.empty(int(self._lengths.sum()), dtype=np.uint8)
        self._blob[self._starts] = _LENGTH_DELIMITED_1
        _put_varint(self._blob, self._starts + 1, id_lengths, prefix - 1)
        id_starts = offsets[:-1]
        for first in range(0, len(ids), _BUILD_CHUNK):
            chunk = slice(first, first + _BUILD_CHUNK)
            _gather_segments(self._blob, self._starts[chunk] + prefix[chunk], data, id_starts[chunk], id_lengths[chunk])

    def encode(self, rows: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> list[bytes]:
        """The encoded `candidates` of each response: rows[i] [k_i] int catalog rows best first, scores[i] [k_i]."""
        counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        if not counts.sum():
            return [b""] * len(rows)
        row = np.concatenate(rows).astype(np.int64, copy=False)
        score = np.concatenate(scores).astype("<f4", copy=False)
        rank = np.arange(len(row), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        item_len = self._lengths[row]
        rank_len = _varint_length(rank)
        body = item_len + 1 + 4 + 1 + rank_len  # item_id field, score tag + fixed32, rank tag + varint
        body_len = _varint_length(body)
        total = 1 + body_len + body
        end = np.cumsum(total)
        start = end - total
        out = np.empty(int(end[-1]), dtype=np.uint8)
        out[start] = _LENGTH_DELIMITED_1
        _put_varint(out, start + 1, body, body_len)
        item_at = start + 1 + body_len
        _gather_segments(out, item_at, self._blob, self._starts[row], item_len)
        score_at = item_at + item_len
        out[score_at] = _FLOAT_2
        out[score_at[:, None] + np.arange(1, 5)] = score.view(np.uint8).reshape(-1, 4)
        out[score_at + 5] = _VARINT_3
        _put_varint(out, score_at + 6, rank, rank_len)
        return _split(out.tobytes(), end, counts)


def _varint_length(values: np.ndarray) -> np.ndarray:
    return 1 + (values >= 1 << 7).astype(np.int64) + (values >= 1 << 14).astype(np.int64)


def _put_varint(out: np.ndarray, at: np.ndarray, values: np.ndarray, lengths: np.ndarray) -> None:
    """Writes values[i] as a varint of lengths[i] bytes at out[at[i]:]."""
    for byte in range(_MAX_VARINT_BYTES):
        has = lengths > byte
        more = lengths > byte + 1
        chunk = (values[has] >> (7 * byte)) & 0x7F
        out[at[has] + byte] = (chunk | np.where(more[has], 0x80, 0)).astype(np.uint8)


def _gather_segments(
    out: np.ndarray, to: np.ndarray, blob: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> None:
    """out[to[i] : to[i] + lengths[i]] = blob[starts[i] : starts[i] + lengths[i]] for every i, in one gather."""
    offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[np.repeat(to, lengths) + offsets] = blob[np.repeat(starts, lengths) + offsets]


def _split(data: bytes, end: np.ndarray, counts: np.ndarray) -> list[bytes]:
    """Cuts the concatenated candidates into one byte string per response (`counts[i]` candidates each)."""
    last = np.cumsum(counts)
    stops = np.concatenate([[0], end])[last].tolist()
    starts = [0, *stops[:-1]]
    return [data[a:b] for a, b in zip(starts, stops, strict=True)]
