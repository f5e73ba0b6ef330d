"""Item filters: a request's `ItemFilter`, validated against the serving version's attributes, and its row mask.

`compile_filter` checks every restrict (unknown namespace, wrong kind, unspecified operator, NaN value →
`InvalidRequest` naming the field, e.g. `filter.numeric[0].op`) and returns an `ItemPredicate`, or None when
the filter is absent or empty. `ItemPredicate.mask` evaluates it over an `AttributeTable`: AND across restricts,
OR within an allow list, deny wins, an item without tokens fails a non-empty allow list and an item without a
value fails every numeric restrict on that attribute.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from model.bundle.contract import AttributeKind
from service.attributes import AttributeTable
from service.config import ServiceLimits
from service.errors import InvalidRequest
from service.generated.retrieval.v1 import retrieval_pb2 as pb

# Bounds on one filter, so that evaluating it stays cheap.
MAX_RESTRICTS = 64
MAX_TOKENS = 1024

_OPERATORS: dict[int, Callable[[np.ndarray, float], np.ndarray]] = {
    pb.NumericRestrict.OPERATOR_LESS: operator.lt,
    pb.NumericRestrict.OPERATOR_LESS_EQUAL: operator.le,
    pb.NumericRestrict.OPERATOR_EQUAL: operator.eq,
    pb.NumericRestrict.OPERATOR_GREATER_EQUAL: operator.ge,
    pb.NumericRestrict.OPERATOR_GREATER: operator.gt,
    pb.NumericRestrict.OPERATOR_NOT_EQUAL: operator.ne,
}


def attribute_kind(kind: AttributeKind) -> pb.AttributeKind:
    """The `AttributeKind` enum value that GetServiceInfo reports for an attribute of `kind`."""
    return {
        AttributeKind.CATEGORICAL: pb.ATTRIBUTE_KIND_CATEGORICAL,
        AttributeKind.MULTI_CATEGORICAL: pb.ATTRIBUTE_KIND_MULTI_CATEGORICAL,
        AttributeKind.NUMERIC: pb.ATTRIBUTE_KIND_NUMERIC,
    }[kind]


@dataclass(frozen=True)
class TokenRestrict:
    """Allow / deny tokens of one categorical attribute (an empty allow set: no allow condition)."""

    namespace: str
    allow: frozenset[str]
    deny: frozenset[str]


@dataclass(frozen=True)
class NumberRestrict:
    """`value_of_item <op> value` on one numeric attribute; `op` is a `NumericRestrict.Operator` value."""

    namespace: str
    op: int
    value: float


@dataclass(frozen=True)
class ItemPredicate:
    """A validated filter: an item passes when it passes every restrict."""

    categorical: tuple[TokenRestrict, ...] = ()
    numeric: tuple[NumberRestrict, ...] = ()

    def mask(self, table: AttributeTable) -> np.ndarray:
        """[N] bool: which catalog rows pass."""
        passing = np.ones(table.size, dtype=bool)
        for restrict in self.categorical:
            if restrict.allow:
                passing &= table.rows_with_any(restrict.namespace, restrict.allow)
            if restrict.deny:
                passing &= ~table.rows_with_any(restrict.namespace, restrict.deny)
        for number in self.numeric:
            values = table.values(number.namespace)
            with np.errstate(invalid="ignore"):
                passing &= _OPERATORS[number.op](values, number.value) & ~np.isnan(values)
        return passing


def compile_filter(
    message: pb.ItemFilter, kinds: Mapping[str, AttributeKind], limits: ServiceLimits, field: str = "filter"
) -> ItemPredicate | None:
    """Validates `message` against the attribute kinds of the serving version.

    Args:
        message: the request's filter.
        kinds: filterable attribute name -> kind.
        limits: the service limits (longest token).
        field: the filter's field path in the request, prefixed to every error.

    Returns:
        The predicate, or None when the filter has no restricts.

    Raises:
        InvalidRequest: naming the offending field.
    """
    count = len(message.categorical) + len(message.numeric)
    if count == 0:
        return None
    if count > MAX_RESTRICTS:
        raise InvalidRequest(field, f"at most {MAX_RESTRICTS} restricts, got {count}")
    categorical = []
    for i, restrict in enumerate(message.categorical):
        path = f"{field}.categorical[{i}]"
        _check_namespace(path, restrict.namespace, kinds, (AttributeKind.CATEGORICAL, AttributeKind.MULTI_CATEGORICAL))
        for name, tokens in (("allow", restrict.allow), ("deny", restrict.deny)):
            if len(tokens) > MAX_TOKENS:
                raise InvalidRequest(f"{path}.{name}", f"at most {MAX_TOKENS} tokens, got {len(tokens)}")
            for j, token in enumerate(tokens):
                if not token or len(token) > limits.max_string_length:
                    raise InvalidRequest(
                        f"{path}.{name}[{j}]", f"must be 1 to {limits.max_string_length} characters, got {token!r}"
                    )
        categorical.append(TokenRestrict(restrict.namespace, frozenset(restrict.allow), frozenset(restrict.deny)))
    numeric = []
    for i, number in enumerate(message.numeric):
        path = f"{field}.numeric[{i}]"
        _check_namespace(path, number.namespace, kinds, (AttributeKind.NUMERIC,))
        if number.op not in _OPERATORS:
            raise InvalidRequest(f"{path}.op", f"a comparison operator is required, got {number.op}")
        if math.isnan(number.value):
            raise InvalidRequest(f"{path}.value", "must not be NaN")
        numeric.append(NumberRestrict(number.namespace, number.op, number.value))
    return ItemPredicate(tuple(categorical), tuple(numeric))


def _check_namespace(
    path: str, namespace: str, kinds: Mapping[str, AttributeKind], allowed: tuple[AttributeKind, ...]
) -> None:
    kind = kinds.get(namespace)
    if kind is None:
        raise InvalidRequest(
            f"{path}.namespace", f"unknown attribute {namespace!r}; filterable attributes: {sorted(kinds)}"
        )
    if kind not in allowed:
        wanted = " or ".join(k.value for k in allowed)
        raise InvalidRequest(
            f"{path}.namespace", f"attribute {namespace!r} is {kind.value}, this restrict needs {wanted}"
        )
