"""The optional ``[study]`` extra: the paper study (``inn_cuda.tasks``, ``failure``,
``baselines``, ``metrics``, ``experiment`` and ``inn-cuda demo``) needs NumPy, SciPy,
Matplotlib, scikit-learn and Pillow; the core (ops, reference, nn, convert, train, uncertainty) needs only
torch and tqdm. Each study module calls :func:`require_study` before its own imports, so a core
install gets one clear ImportError naming the extra instead of a bare ``No module named``."""

from __future__ import annotations

import importlib.util
import sys

STUDY_INSTALL = 'pip install "inn_cuda[study]"'
# import name -> distribution name
STUDY_PACKAGES = {"numpy": "numpy", "scipy": "scipy", "matplotlib": "matplotlib", "sklearn": "scikit-learn",
                  "PIL": "pillow"}


def installed(name: str) -> bool:
    if sys.modules.get(name) is not None:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_study(module: str) -> None:
    """Raise an ImportError naming ``module``, the missing packages and the extra that
    installs them, unless the whole study stack is installed."""
    missing = [dist for name, dist in STUDY_PACKAGES.items() if not installed(name)]
    if missing:
        raise ImportError(f"{module} is part of the inn_cuda study and needs "
                          f"{', '.join(missing)} (not installed); install the study extra: "
                          f"{STUDY_INSTALL}", name=module)
