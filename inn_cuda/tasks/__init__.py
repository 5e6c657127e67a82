"""Reconstruction tasks for the failure-mode experiments: limited-angle CT (``ct``, ``phantoms``,
``data``), 1D deconvolution (``deconv1d``) and small default networks (``models``)."""
