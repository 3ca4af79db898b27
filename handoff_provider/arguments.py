"""Checks of the container arguments of the operators and the DAG factory (``vars=``,
``envs=``, ``run_kwargs=``, ``subnets=``, ...), each failing with one line that names the
argument. Without them a string where a dict or a list belongs fails later and elsewhere:
``dict("A=1")`` with "dictionary update sequence element #0 has length 1", ``list("subnet-1")``
silently as eight one-letter subnets. Imports nothing: the factory checks at DAG parse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["mapping_argument", "string_list_argument"]


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def mapping_argument(
    name: str,
    value: Any,
    *,
    string_keys: bool = False,
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """``value`` as a new dict (``{}`` for None); ``error`` naming ``name`` when it isn't
    a mapping, or (``string_keys``: keyword arguments) when a key isn't a string."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{name}: expected a dict of names to values (got {_kind(value)})")
    if string_keys:
        for key in value:
            if not isinstance(key, str):
                raise error(f"{name}: keys are argument names, strings (got {_kind(key)})")
    return dict(value)


def string_list_argument(
    name: str, value: Any, *, error: type[Exception] = ValueError
) -> list[str] | None:
    """``value`` (a list or tuple of strings) as a new list (None when empty or None);
    ``error`` naming ``name`` for anything else, a single string above all."""
    if not value:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise error(f"{name}: expected a list of strings (got {_kind(value)})")
    for item in value:
        if not isinstance(item, str):
            raise error(f"{name}: expected a list of strings (got {_kind(item)} in it)")
    return list(value)
