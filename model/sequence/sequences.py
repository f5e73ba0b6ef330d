"""Per-user item sequences in time order, as fixed-length token windows with an explicit padding mask."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.sequence.vocabulary import ITEM_OFFSET, PAD_TOKEN


class Padding(enum.Enum):
    """Where a window shorter than the maximum length is padded.

    LEFT: padding first, the most recent item in the last column (the layout the served query model uses).
    RIGHT: the oldest item in the first column, padding after the most recent one.
    """

    LEFT = "left"
    RIGHT = "right"


@dataclass(frozen=True, eq=False)
class Sequences:
    """Token windows of item sequences, oldest item first.

    Attributes:
        tokens: [R, max_length] int64; item internal id i is token i + ITEM_OFFSET, padding is PAD_TOKEN.
        padding_mask: [R, max_length] bool, True at real items.
        user_rows: [R] int64 user row of each window.
        lengths: [R] int64 number of real items of each window.
    """

    tokens: np.ndarray
    padding_mask: np.ndarray
    user_rows: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def positions(self) -> int:
        """Real items over all windows."""
        return int(self.lengths.sum())

    def take(self, rows: npt.ArrayLike) -> Sequences:
        """The windows at `rows`, in that order."""
        index = np.asarray(rows, dtype=np.int64)
        return Sequences(self.tokens[index], self.padding_mask[index], self.user_rows[index], self.lengths[index])


def build_sequences(
    users: npt.ArrayLike,
    items: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    *,
    num_users: int,
    max_length: int,
    padding: Padding = Padding.LEFT,
    stride: int | None = None,
) -> Sequences:
    """Groups interactions by user, orders them by time and cuts token windows.

    Events with equal timestamps keep their input order (a stable sort, as in `leave_last_out`).

    Args:
        users: [n] user rows in [0, num_users).
        items: [n] internal item ids (>= 0).
        timestamps: [n] event times.
        num_users: number of user rows.
        max_length: window length L (>= 1).
        padding: side on which short windows are padded.
        stride: None gives one window per user row, in row order, holding the user's latest L items (all
            padding for a user without events). An integer s gives, per user with events, the windows that
            end at the user's n-th, (n - s)-th, (n - 2s)-th, ... item (training augmentation; s < L overlaps).

    Returns:
        The windows.
    """
    user_arr = np.asarray(users, dtype=np.int64).reshape(-1)
    item_arr = np.asarray(items, dtype=np.int64).reshape(-1)
    time_arr = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if not (len(user_arr) == len(item_arr) == len(time_arr)):
        raise ValueError(
            f"users, items, timestamps differ in length: {len(user_arr)}, {len(item_arr)}, {len(time_arr)}"
        )
    if max_length < 1 or (stride is not None and stride < 1):
        raise ValueError(f"max_length and stride must be >= 1, got {max_length} and {stride}")
    if user_arr.size and (user_arr.min() < 0 or user_arr.max() >= num_users):
        raise ValueError(f"user rows must be in [0, {num_users}), got [{user_arr.min()}, {user_arr.max()}]")
    if item_arr.size and item_arr.min() < 0:
        raise ValueError(f"item ids must be >= 0, got {item_arr.min()}")
    by_time = np.argsort(time_arr, kind="stable")
    order = by_time[np.argsort(user_arr[by_time], kind="stable")]
    sorted_items = item_arr[order]
    counts = np.bincount(user_arr, minlength=num_users).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    row_users, ends = _window_ends(counts, stride)
    lengths = np.minimum(ends, max_length)
    first = starts[row_users] + ends - lengths  # absolute position of each window's oldest item
    column = np.arange(max_length, dtype=np.int64)
    if padding is Padding.LEFT:
        offset = column[None, :] - (max_length - lengths)[:, None]
    else:
        offset = np.broadcast_to(column[None, :], (len(lengths), max_length))
    mask = (offset >= 0) & (offset < lengths[:, None])
    positions = np.where(mask, first[:, None] + offset, 0)
    tokens = np.where(mask, sorted_items[positions] + ITEM_OFFSET if sorted_items.size else PAD_TOKEN, PAD_TOKEN)
    return Sequences(tokens.astype(np.int64), mask, row_users, lengths.astype(np.int64))


def window_counts(event_counts: npt.ArrayLike, *, max_length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user with n events: how many windows `build_sequences(..., stride=stride)` cuts, and how many real
    items they hold in all, without cutting them (the window ends are n, n - s, n - 2s, ... > 0).

    Returns:
        [U] windows and [U] real positions, int64.
    """
    n = np.asarray(event_counts, dtype=np.int64)
    if max_length < 1 or stride < 1:
        raise ValueError(f"max_length and stride must be >= 1, got {max_length} and {stride}")
    windows = np.where(n > 0, (n - 1) // stride + 1, 0)
    full = np.minimum(np.where(n >= max_length, (n - max_length) // stride + 1, 0), windows)  # ends >= max_length
    # The other windows hold n - k*s items for k = full .. windows - 1.
    rest = windows - full
    positions = full * max_length + rest * n - stride * (windows * (windows - 1) - full * (full - 1)) // 2
    return windows, positions


def _window_ends(counts: np.ndarray, stride: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(user row, end position within the user's events) of every window."""
    if stride is None:
        return np.arange(len(counts), dtype=np.int64), counts.copy()
    windows = np.where(counts > 0, (counts - 1) // stride + 1, 0)
    row_users = np.repeat(np.arange(len(counts), dtype=np.int64), windows)
    first_window = np.repeat(np.cumsum(windows) - windows, windows)
    k = np.arange(len(row_users), dtype=np.int64) - first_window
    return row_users, counts[row_users] - k * stride
