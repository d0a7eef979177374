"""scikit-learn integration when scikit-learn is installed, and a small stand-in when not.

With scikit-learn, the estimators derive from its base classes, so cloning, pipelines,
`set_output`, the HTML repr and its estimator checks work as for its own KMeans. Without
it, the stand-in below provides `get_params`/`set_params`, a repr and the mixin methods.
"""

from __future__ import annotations

import inspect

import numpy as np

try:
    from sklearn.base import (
        BaseEstimator,
        ClassNamePrefixFeaturesOutMixin,
        ClusterMixin,
        TransformerMixin,
    )
    from sklearn.exceptions import ConvergenceWarning, NotFittedError

    HAVE_SKLEARN = True
    ESTIMATOR_BASES: tuple = (
        ClassNamePrefixFeaturesOutMixin,
        TransformerMixin,
        ClusterMixin,
        BaseEstimator,
    )
except ImportError:  # scikit-learn is optional
    HAVE_SKLEARN = False

    class ConvergenceWarning(UserWarning):
        """The fit stopped in a state worth a warning (as scikit-learn's ConvergenceWarning)."""

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before `fit` (as scikit-learn's NotFittedError)."""

    class _StandInBase:
        """get_params / set_params / repr / fit_predict / fit_transform without scikit-learn."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(
                p.name
                for p in signature.parameters.values()
                if p.name != "self" and p.kind != p.VAR_KEYWORD
            )

        def get_params(self, deep: bool = True) -> dict:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for estimator {self}. "
                        f"Valid parameters are: {valid!r}."
                    )
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            defaults = {
                p.name: p.default
                for p in inspect.signature(type(self).__init__).parameters.values()
            }
            changed = [
                f"{name}={value!r}"
                for name, value in self.get_params().items()
                if not _same(value, defaults.get(name))
            ]
            return f"{type(self).__name__}({', '.join(changed)})"

        def fit_predict(self, X, y=None, **kwargs):
            self.fit(X, **kwargs)
            return self.labels_

        def fit_transform(self, X, y=None, **kwargs):
            return self.fit(X, **kwargs).transform(X)

        def get_feature_names_out(self, input_features=None):
            prefix = type(self).__name__.lower()
            return np.asarray([f"{prefix}{i}" for i in range(self._n_features_out)], dtype=object)

    def _same(a, b) -> bool:
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return a is b
        try:
            return bool(a == b)
        except Exception:
            return a is b

    ESTIMATOR_BASES = (_StandInBase,)
