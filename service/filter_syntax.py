"""Item filters written as short strings, for the client and `retrieval-query --filter`.

One restrict per string: `name=token` (allow), `name!=token` (deny), or a numeric comparison `name<x`,
`name<=x`, `name==x`, `name>=x`, `name>x`, `name!=x`. `=` and `!=` are categorical unless the value is a
number and the attribute is numeric (the kinds GetServiceInfo reports decide; without them a number after `=`
or `!=` is a token). Several allow tokens of one name are ORed, restricts are ANDed, as in `ItemFilter`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from service.generated.retrieval.v1 import retrieval_pb2 as pb

_RESTRICT = re.compile(r"^\s*([^<>=!\s]+)\s*(<=|>=|==|!=|<|>|=)\s*(.+?)\s*$")
_NUMERIC_OPS = {
    "<": pb.NumericRestrict.OPERATOR_LESS,
    "<=": pb.NumericRestrict.OPERATOR_LESS_EQUAL,
    "==": pb.NumericRestrict.OPERATOR_EQUAL,
    ">=": pb.NumericRestrict.OPERATOR_GREATER_EQUAL,
    ">": pb.NumericRestrict.OPERATOR_GREATER,
}


def parse_filter(restricts: Iterable[str], kinds: Mapping[str, int] | None = None) -> pb.ItemFilter:
    """An `ItemFilter` from restrict strings such as `genres=Comedy` or `release_year>=1990`.

    Args:
        restricts: one restrict per string.
        kinds: attribute name -> `pb.AttributeKind` (from GetServiceInfo); decides whether `=` / `!=` on a
            number compare numbers (NUMERIC) or tokens.

    Raises:
        ValueError: naming the string that does not parse.
    """
    kinds = kinds or {}
    categorical: dict[str, pb.CategoricalRestrict] = {}
    numeric: list[pb.NumericRestrict] = []
    for text in restricts:
        match = _RESTRICT.match(text)
        if match is None:
            raise ValueError(
                f"filter {text!r}: expected NAME=TOKEN, NAME!=TOKEN or NAME<op>NUMBER (op: < <= == >= > !=)"
            )
        name, op, value = match.groups()
        is_numeric = kinds.get(name) == pb.ATTRIBUTE_KIND_NUMERIC or op not in ("=", "!=")
        if is_numeric:
            try:
                number = float(value)
            except ValueError as error:
                raise ValueError(f"filter {text!r}: {op} needs a number, got {value!r}") from error
            operator = pb.NumericRestrict.OPERATOR_NOT_EQUAL if op == "!=" else _NUMERIC_OPS["==" if op == "=" else op]
            numeric.append(pb.NumericRestrict(namespace=name, op=operator, value=number))
            continue
        restrict = categorical.setdefault(name, pb.CategoricalRestrict(namespace=name))
        (restrict.allow if op == "=" else restrict.deny).append(value)
    return pb.ItemFilter(categorical=list(categorical.values()), numeric=numeric)


def parse_checked_filter(restricts: Sequence[str], kinds: Mapping[str, int]) -> pb.ItemFilter:
    """`parse_filter` for a caller that knows the model's attributes: every restrict must name one of them, with
    an operator its kind takes (a token for a categorical attribute, a number for a numeric one).

    Args:
        restricts: one restrict per string.
        kinds: the model's filterable attributes, name -> `pb.AttributeKind` (from GetServiceInfo).

    Raises:
        ValueError: naming the first string that does not parse or does not fit the attributes.
    """
    for text in restricts:
        single = parse_filter([text], kinds)
        restrict = (single.categorical or single.numeric)[0]
        name, numeric = restrict.namespace, bool(single.numeric)
        if name not in kinds:
            known = ", ".join(f"{n} ({_kind_name(k)})" for n, k in sorted(kinds.items())) or "none"
            raise ValueError(f"filter {text!r}: the model has no attribute {name!r}; its attributes: {known}")
        if numeric != (kinds[name] == pb.ATTRIBUTE_KIND_NUMERIC):
            usage = "NAME<op>NUMBER (op: < <= == >= > !=)" if not numeric else "NAME=TOKEN or NAME!=TOKEN"
            raise ValueError(f"filter {text!r}: {name!r} is {_kind_name(kinds[name])}: write {usage}")
    return parse_filter(restricts, kinds)


def _kind_name(kind: int) -> str:
    """ "categorical", "multi-valued categorical" or "numeric"."""
    name = pb.AttributeKind.Name(kind).removeprefix("ATTRIBUTE_KIND_").lower()
    return "multi-valued categorical" if name == "multi_categorical" else name
