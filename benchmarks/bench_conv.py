"""The interval convolution benchmarks alone (the conv sweep and the layers of the demo's and
the paper's U-Net): ``inn-cuda bench --ops conv2d conv_transpose2d --networks none`` (later
options override these; see ``--help``).

    python benchmarks/bench_conv.py [--quick] [--device cpu|cuda|all] [--out DIR]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inn_cuda.benchmark.command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--ops", "conv2d", "conv_transpose2d", "--networks", "none",
                   "--out", "runs/bench-conv", *sys.argv[1:]]))
