"""The conv shapes that pick the CPU kernels' different code paths (see test_cpu_conv_paths.py),
shared by the tests that run every path."""

# (op, x shape, w shape, config): config as the ops take it after the bias.
CASES = [
    # conv2d, stride 1: the direct path (input gradient direct while padding <= reach)
    ("conv2d", (2, 3, 9, 11), (5, 3, 3, 3), dict(padding=(1, 1))),
    ("conv2d", (3, 7, 6, 5), (9, 7, 3, 3), dict(padding=(0, 0))),
    ("conv2d", (2, 4, 12, 10), (6, 2, 3, 2), dict(padding=(2, 1), dilation=(2, 3), groups=2)),
    ("conv2d", (1, 5, 7, 9), (3, 5, 1, 1), dict()),
    ("conv2d", (5, 6, 6, 6), (13, 6, 3, 3), dict(padding=(1, 1))),       # images per chunk
    ("conv2d", (1, 3, 70, 90), (4, 3, 3, 3), dict(padding=(1, 1))),      # image parts
    ("conv2d", (2, 3, 8, 8), (4, 3, 3, 3), dict(padding=(3, 2))),        # padding > reach
    # 64 output channels: the general forward on the pixel lanes (about 18 % of AVX-512's and
    # 9 % of AVX2's taps straddle here, under kGemmStraddlingShare; test_cpu_general_weight_classes
    # takes it to the GEMM with mostly straddling weights)
    ("conv2d", (1, 3, 6, 7), (64, 3, 3, 3), dict(padding=(1, 1))),
    ("conv2d", (2, 72, 3, 3), (64, 72, 3, 3), dict(padding=(1, 1))),     # small image: GEMM both
    # conv2d, other strides: gathered windows (input gradient: the GEMM kernel)
    ("conv2d", (2, 4, 11, 9), (6, 2, 3, 3), dict(stride=(2, 1), padding=(1, 0), groups=2)),
    ("conv2d", (2, 3, 9, 10), (5, 3, 2, 3), dict(stride=(3, 2), dilation=(1, 2))),
    # conv_transpose2d: windows of the output gradient; whole-image chunks where windows overlap
    ("conv_transpose2d", (2, 7, 6, 5), (7, 3, 2, 2), dict(stride=(2, 2))),
    ("conv_transpose2d", (1, 4, 40, 37), (4, 5, 2, 2), dict(stride=(2, 2))),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 3), dict(stride=(1, 1), padding=(1, 1))),
    ("conv_transpose2d", (3, 6, 5, 7), (6, 2, 3, 2),
     dict(stride=(3, 2), padding=(2, 1), output_padding=(1, 0), groups=2)),
    ("conv_transpose2d", (2, 4, 4, 5), (4, 3, 3, 3), dict(dilation=(3, 2), output_padding=(2, 1))),
    # no images
    ("conv2d", (0, 3, 8, 8), (4, 3, 3, 3), dict(padding=(1, 1))),
    ("conv_transpose2d", (0, 4, 5, 5), (4, 2, 2, 2), dict(stride=(2, 2))),
    # conv2d direct with more than 16 input channels per group: the forward's taps classified in
    # blocks of 16 channels (kDirectBlockChannels, csrc/cpu/conv_pixel_forward.cpp), the last
    # block partial
    ("conv2d", (1, 40, 6, 7), (9, 40, 3, 3), dict(padding=(1, 1))),
    ("conv2d", (2, 36, 5, 4), (6, 18, 3, 3), dict(padding=(1, 1), groups=2)),
]


def config(op, c):
    pairs = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), output_padding=(0, 0))
    pairs.update(c)
    groups = c.get("groups", 1)
    if op == "conv2d":
        return [pairs["stride"], pairs["padding"], pairs["dilation"], groups]
    return [pairs["stride"], pairs["padding"], pairs["output_padding"], groups, pairs["dilation"]]
