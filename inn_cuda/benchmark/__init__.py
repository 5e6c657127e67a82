"""The benchmark suite behind ``inn-cuda bench``.

:mod:`.timing` (repeats, CPU wall/CPU time, CUDA events, statistics), :mod:`.memory` (peak
memory of one call), :mod:`.cases` (the documented shape sweep and the U-Net layers),
:mod:`.ops` (the op benchmarks), :mod:`.network` (the whole-network benchmark),
:mod:`.report` (tables, JSON, figures) and :mod:`.command` (the command line).
"""
