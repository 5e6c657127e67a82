"""The end-to-end failure-mode study behind ``inn-cuda demo``: settings and presets
(:mod:`.presets`), the two problems (:mod:`.problems`), the three methods and two control maps
(:mod:`.methods`), evaluation (:mod:`.evaluate`), statistics (:mod:`.statistics`) and the verdict
rule (:mod:`.verdict`), orchestration (:mod:`.study`, several seeds: :mod:`.seeds`), the report
(:mod:`.report`) and figures (:mod:`.figures`)."""

from .._extras import require_study

require_study(__name__)

from .presets import METHODS, PRESETS, TASKS, Settings, make_settings, parse_assignments
from .seeds import run_seeds
from .study import StudyError, StudyResult, run_study

__all__ = [
    "METHODS",
    "PRESETS",
    "Settings",
    "StudyError",
    "StudyResult",
    "TASKS",
    "make_settings",
    "parse_assignments",
    "run_seeds",
    "run_study",
]
