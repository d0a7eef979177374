"""Parameter checks from declarative tables, with scikit-learn's messages: every estimator
and function states its constraints once, as `{name: constraint}`, and `check_params`
validates them."""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np


class InvalidParameterError(ValueError, TypeError):
    """A parameter of the wrong type or value (scikit-learn raises its own class of the same
    two bases, so `except ValueError` and `except TypeError` both catch it)."""


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
            raise InvalidParameterError(f"The '{name}' parameter must be an int; got {value!r}.")
        if value < self.low:
            raise InvalidParameterError(f"The '{name}' parameter must be an int >= {self.low}; got {value!r}.")
        if value > INT_MAX:
            raise InvalidParameterError(f"The '{name}' parameter must be an int <= 2**63 - 1; got {value!r}.")


@dataclass(frozen=True)
class Real:
    """A finite real number (not a bool) `>= low` (`> low` when `strict`)."""

    low: float
    strict: bool = False

    def check(self, name: str, value) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
            raise InvalidParameterError(f"The '{name}' parameter must be a real number; got {value!r}.")
        below = value <= self.low if self.strict else value < self.low
        if not np.isfinite(value) or below:
            bound = f"> {self.low}" if self.strict else f">= {self.low}"
            raise InvalidParameterError(f"The '{name}' parameter must be a finite number {bound}; got {value!r}.")


@dataclass(frozen=True)
class Options:
    """One of the given strings."""

    values: tuple

    def check(self, name: str, value) -> None:
        if not (isinstance(value, str) and value in self.values):
            choices = ", ".join(repr(v) for v in self.values)
            raise InvalidParameterError(f"The '{name}' parameter must be one of {choices}; got {value!r}.")


@dataclass(frozen=True)
class Bool:
    def check(self, name: str, value) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidParameterError(f"The '{name}' parameter must be a bool; got {value!r}.")


@dataclass(frozen=True)
class Verbosity:
    """An int or a bool, or "progress" (a progress bar instead of scikit-learn's lines)."""

    def check(self, name: str, value) -> None:
        if value == "progress" and isinstance(value, str):
            return
        if not isinstance(value, (bool, numbers.Integral, np.integer)):
            raise InvalidParameterError(f"The '{name}' parameter must be an int, a bool or 'progress'; got {value!r}.")


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
            raise InvalidParameterError(
                f"The '{name}' parameter must be 'k-means++', 'random', a callable or an "
                f"array of shape (n_clusters, n_features); got {value!r}."
            )


@dataclass(frozen=True)
class BackendName:
    """'auto' or a known backend (availability is checked at fit)."""

    def check(self, name: str, value) -> None:
        from ._backend import check_name

        check_name(value)


@dataclass(frozen=True)
class Seed:
    """A random seed as scikit-learn's `random_state` takes it (None, an int in
    `[0, 2**32)`, a `RandomState` or a `Generator`)."""

    def check(self, name: str, value) -> None:
        from ._validation import seed_from

        if value is None or isinstance(value, (np.random.RandomState, np.random.Generator)):
            return
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
            raise InvalidParameterError(f"The '{name}' parameter must be None, an int in [0, 2**32) or a numpy.random.RandomState / Generator; got {value!r}.")
        seed_from(value, name=name)


def check_params(table: dict, values: dict, names: dict | None = None) -> None:
    """Checks `values[name]` against `table[name]` for every entry of the table. `names`
    maps a table's name to the one the caller's signature uses (in `values` and messages)."""
    for name, constraint in table.items():
        spelled = (names or {}).get(name, name)
        constraint.check(spelled, values[spelled])


# What every Lloyd fit takes, in-memory or over chunks: one table, one set of messages.
FIT_CONSTRAINTS = {
    "n_clusters": Int(1),
    "init": InitSpec(),
    "n_init": IntOr(1, ("auto",)),
    "max_iter": Int(1),
    "tol": Real(0.0),
    "verbose": Verbosity(),
    "spherical": Bool(),
    "backend": BackendName(),
}


@dataclass(frozen=True)
class ChunkedInit:
    """'k-means||', 'k-means++', 'random' or an array of centres (checked against the data later)."""

    def check(self, name: str, value) -> None:
        from ._chunked import INIT_METHODS

        if isinstance(value, str):
            if value not in INIT_METHODS:
                choices = ", ".join(repr(v) for v in INIT_METHODS)
                raise InvalidParameterError(f"The '{name}' parameter must be one of {choices} or an array of shape (n_clusters, n_features); got {value!r}.")
            return
        if callable(value) or not (hasattr(value, "__array__") or isinstance(value, (list, tuple))):
            raise InvalidParameterError(f"The '{name}' parameter must be 'k-means||', 'k-means++', 'random' or an array of shape (n_clusters, n_features); got {value!r}.")


# Fits over chunks (`kmeans_streaming`, `mlx_kmeans.dask.KMeans`) add their initialisation's
# options; the data never sits in memory, so a callable `init` cannot be given.
CHUNKED_CONSTRAINTS = {
    **FIT_CONSTRAINTS,
    "init": ChunkedInit(),
    "algorithm": Options(("auto", "lloyd", "elkan")),
    "init_size": Int(1, optional=True),
    "oversampling_factor": Real(0.0, strict=True),
    "init_max_iter": Int(0, optional=True),
}


def n_init_for(n_init, init, default: int, owner: str) -> int:
    """How many initialisations a fit runs, as scikit-learn decides it: "auto" is 1 for
    k-means++ (and k-means‖) or given centres, `default` otherwise; given centres (an array,
    or a callable's output, computed once) are used once, with scikit-learn's warning when
    another number was asked for."""
    given = not isinstance(init, str)
    if isinstance(n_init, str):  # "auto"
        return 1 if given or init in ("k-means++", "k-means||") else default
    if given and n_init != 1:
        warnings.warn(
            f"Explicit initial center position passed: performing only one init in {owner} instead of n_init={n_init}.",
            RuntimeWarning,
            stacklevel=4,
        )
        return 1
    return int(n_init)
