"""The interval linear benchmarks alone: ``inn-cuda bench --ops linear --groups sweep
--networks none`` (later options override these; see ``--help``).

    python benchmarks/bench_linear.py [--quick] [--device cpu|cuda|all] [--out DIR]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_cuda.benchmark.command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--ops", "linear", "--groups", "sweep", "--networks", "none",
                   "--out", "runs/bench-linear", *sys.argv[1:]]))
