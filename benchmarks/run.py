"""``inn-cuda bench`` from a source checkout (no install needed): every option is the same.

    python benchmarks/run.py --quick --out runs/bench-quick
    python benchmarks/run.py --threads 1 --time cpu --out runs/bench-cpu
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_cuda.benchmark.command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
