"""Parameter checks from declarative tables, with scikit-learn's messages: every estimator
and function states its constraints once, as `{name: constraint}`, and `check_params`
validates them."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


# The engine counts in 64 bits: larger integers are refused here, not overflowed later.
INT_MAX = 2**63 - 1


@dataclass(frozen=True)
class Int:
    """An integer (not a bool) in `[low, INT_MAX]`; `None` allowed with `optional`."""

    low: int
    optional: bool = False

    def check(self, name: str, value) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
            raise TypeError(f"The '{name}' parameter must be an int; got {value!r}.")
        if value < self.low:
            raise ValueError(f"The '{name}' parameter must be an int >= {self.low}; got {value!r}.")
        if value > INT_MAX:
            raise ValueError(f"The '{name}' parameter must be an int <= 2**63 - 1; got {value!r}.")


@dataclass(frozen=True)
class Real:
    """A finite real number (not a bool) `>= low`."""

    low: float

    def check(self, name: str, value) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"The '{name}' parameter must be a real number; got {value!r}.")
        if not np.isfinite(value) or value < self.low:
            raise ValueError(f"The '{name}' parameter must be a finite number >= {self.low}; got {value!r}.")


@dataclass(frozen=True)
class Options:
    """One of the given strings."""

    values: tuple

    def check(self, name: str, value) -> None:
        if not (isinstance(value, str) and value in self.values):
            choices = ", ".join(repr(v) for v in self.values)
            raise ValueError(f"The '{name}' parameter must be one of {choices}; got {value!r}.")


@dataclass(frozen=True)
class Bool:
    def check(self, name: str, value) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"The '{name}' parameter must be a bool; got {value!r}.")


@dataclass(frozen=True)
class Verbosity:
    """An int or a bool, or "progress" (a progress bar instead of scikit-learn's lines)."""

    def check(self, name: str, value) -> None:
        if value == "progress" and isinstance(value, str):
            return
        if not isinstance(value, (bool, numbers.Integral, np.integer)):
            raise TypeError(f"The '{name}' parameter must be an int, a bool or 'progress'; got {value!r}.")


@dataclass(frozen=True)
class IntOr:
    """An integer `>= low`, or one of the given strings."""

    low: int
    strings: tuple

    def check(self, name: str, value) -> None:
        if isinstance(value, str) and value in self.strings:
            return
        Int(self.low).check(name, value)


@dataclass(frozen=True)
class InitSpec:
    """'k-means++', 'random', a callable, or an array of centres (checked against the data later)."""

    def check(self, name: str, value) -> None:
        named = isinstance(value, str) and value in ("k-means++", "random")
        if not (named or callable(value) or hasattr(value, "__array__") or isinstance(value, (list, tuple))):
            raise ValueError(
                f"The '{name}' parameter must be 'k-means++', 'random', a callable or an "
                f"array of shape (n_clusters, n_features); got {value!r}."
            )


@dataclass(frozen=True)
class BackendName:
    """'auto' or a known backend (availability is checked at fit)."""

    def check(self, name: str, value) -> None:
        from ._backend import check_name

        check_name(value)


def check_params(table: dict, values: dict) -> None:
    """Checks `values[name]` against `table[name]` for every entry of the table."""
    for name, constraint in table.items():
        constraint.check(name, values[name])
