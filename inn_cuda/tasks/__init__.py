"""Reconstruction tasks for the failure-mode experiments: limited-angle CT (``ct``, ``phantoms``,
``data``), 1D deconvolution (``deconv1d``) and small default networks (``models``)."""

from .._extras import require_study

require_study(__name__)

from .ct import LimitedAngleCT, wedge_angles
from .data import CTImageFolder, CTPhantomDataset
from .deconv1d import NOISE_LEVELS, Deconvolution1D, deconv1d_datasets
from .models import ConvNet1d, UNet
from .phantoms import make_phantom, shepp_logan

__all__ = [
    "CTImageFolder",
    "CTPhantomDataset",
    "ConvNet1d",
    "Deconvolution1D",
    "LimitedAngleCT",
    "NOISE_LEVELS",
    "UNet",
    "deconv1d_datasets",
    "make_phantom",
    "shepp_logan",
    "wedge_angles",
]
