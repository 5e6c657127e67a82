"""CT datasets yielding ``(network input, ground truth)`` pairs, each ``(1, size, size)`` float32:
the input is the limited-angle FBP of the ground truth (:meth:`LimitedAngleCT.simulate`).

* :class:`CTPhantomDataset`: seeded phantoms generated on the fly; item ``i`` depends only on
  ``(seed, i)``, so it is the same with any worker count or access order.
* :class:`CTImageFolder`: a user's own images (PNG/JPEG/TIFF via Pillow, ``.npy``, DICOM via
  pydicom), resized to the operator's size and run through the same simulation.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .ct import LimitedAngleCT, disc_mask
from .phantoms import PHANTOM_KINDS, make_phantom

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NPY_SUFFIXES = (".npy",)
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NPY_SUFFIXES


def item_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator for item ``index`` of a dataset seeded with ``seed``."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (1 << 63))


class CTPhantomDataset(Dataset):
    """``length`` phantoms of ``kind`` (see :data:`PHANTOM_KINDS`) and their FBP inputs.

    ``precompute=True`` simulates everything at construction, in batches of ``batch`` (fast:
    ~1 ms per 64 x 64 image); ``False`` simulates item by item on access (for large sizes).
    """

    def __init__(self, length: int, ct: LimitedAngleCT, *, kind: str = "mixed", seed: int = 0,
                 precompute: bool = True, batch: int = 64):
        if length < 0:
            raise ValueError(f"length: expected >= 0, got {length}")
        if kind not in PHANTOM_KINDS:
            raise ValueError(f"kind: expected one of {PHANTOM_KINDS}, got {kind!r}")
        self.length, self.ct, self.kind, self.seed = length, ct, kind, seed
        self._inputs = self._targets = None
        if precompute:
            targets = torch.stack([self.phantom(i) for i in range(length)]) if length else \
                torch.zeros(0, ct.size, ct.size)
            inputs = torch.cat([self._simulate(targets[i:i + batch], i)
                                for i in range(0, length, batch)]) if length else targets.clone()
            self._inputs, self._targets = inputs[:, None], targets[:, None]

    def phantom(self, index: int) -> torch.Tensor:
        """Ground truth ``(size, size)`` of item ``index``."""
        return make_phantom(self.kind, self.ct.size, item_generator(self.seed, index))

    def _simulate(self, targets, first_index):
        """FBP inputs of consecutive items from ``first_index``; each item's noise has its own
        seed, so batched and item-by-item simulation agree."""
        sinograms = self.ct.radon(targets)
        if self.ct.noise > 0:
            sinograms = torch.stack([
                self.ct.add_noise(s, item_generator(self.seed + 1, first_index + k))
                for k, s in enumerate(sinograms)])
        return self.ct.fbp(sinograms)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        index %= self.length
        if self._inputs is not None:
            return self._inputs[index], self._targets[index]
        target = self.phantom(index)
        return self._simulate(target[None], index)[0][None], target[None]

    def tensors(self):
        """All ``(inputs, targets)`` as two ``(length, 1, size, size)`` tensors."""
        if self._inputs is not None:
            return self._inputs, self._targets
        pairs = [self[i] for i in range(self.length)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


class ImageFileError(ValueError):
    """An image file cannot be used: unreadable, truncated, of an unsupported kind, or holding
    values that are not a finite real 2D image. The message starts with the file's path."""


def _read_npy(path: Path) -> np.ndarray:
    array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):  # an .npz archive saved under a .npy name
        raise ValueError(f"expected one array, got {type(array).__name__}")
    return array


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError as err:
        raise ImportError(f"reading DICOM file {path} needs pydicom, which is not installed: "
                          f"`pip install pydicom`") from err
    ds = pydicom.dcmread(path)
    array = ds.pixel_array.astype(np.float64)
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    return array * slope + float(getattr(ds, "RescaleIntercept", 0.0))


def _read_picture(path: Path) -> np.ndarray:
    from PIL import Image

    with warnings.catch_warnings():
        # Pillow warns above Image.MAX_IMAGE_PIXELS and raises at twice that: a header that
        # claims a huge image is refused before it is decompressed.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            return np.asarray(img.convert("F") if img.mode not in ("I", "I;16", "F") else img)


def _check_array(path: Path, array: np.ndarray) -> np.ndarray:
    """The array as a 2D finite float64 image, or an :class:`ImageFileError` naming ``path``."""
    if array.dtype.kind not in "biuf":
        what = {"c": "complex", "O": "object (Python objects)", "U": "text", "S": "bytes",
                "V": "structured records"}.get(array.dtype.kind, str(array.dtype))
        raise ImageFileError(f"{path}: expected a real-valued image, got a {what} array "
                             f"({array.dtype})")
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3 and 1 in array.shape:
        array = array.squeeze()
    if array.ndim != 2 or 0 in array.shape:
        raise ImageFileError(f"{path}: expected a non-empty 2D (grey) image, got shape "
                             f"{array.shape}")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ImageFileError(f"{path}: {bad} of {array.size} values are NaN or infinite; "
                             f"expected a finite image")
    return array


def load_image(path) -> np.ndarray:
    """A 2D float64 array from an image file: PNG/JPEG/TIFF/BMP (Pillow, colour converted to grey),
    ``.npy`` (2D, or 3D with a singleton axis) or DICOM (pydicom; RescaleSlope/Intercept applied,
    so CT slices come in Hounsfield units). Every problem (unreadable, truncated, a
    decompression bomb, complex/object/empty arrays, NaN or infinite values) is an
    :class:`ImageFileError` whose message starts with the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {**{s: (_read_npy, "a NumPy .npy array") for s in NPY_SUFFIXES},
               **{s: (_read_dicom, "a DICOM file") for s in DICOM_SUFFIXES},
               **{s: (_read_picture, "an image") for s in IMAGE_SUFFIXES}}
    if suffix not in readers:
        raise ImageFileError(f"{path}: unsupported file type {suffix!r}; expected one of "
                             f"{SUPPORTED_SUFFIXES}")
    read, kind = readers[suffix]
    try:
        array = read(path)
    except ImportError:
        raise
    except Exception as error:  # each library raises its own types for damaged files
        detail = " ".join(str(error).split()) or type(error).__name__
        raise ImageFileError(f"{path}: cannot be read as {kind} ({type(error).__name__}: "
                             f"{detail})") from error
    return _check_array(path, array)


def prepare_image(array: np.ndarray, size: int, *, window=None,
                  circle: bool = True) -> torch.Tensor:
    """Resize (anti-aliased bilinear) a 2D array to ``size x size`` float32 and scale it to [0, 1]:
    ``window=None`` scales min..max per image, ``(lo, hi)`` clips to that window (e.g. HU)
    first. ``circle`` zeroes the outside of the reconstruction disc."""
    image = torch.as_tensor(array, dtype=torch.float64)
    if window is None:
        lo, hi = float(image.min()), float(image.max())
    else:
        lo, hi = (float(v) for v in window)
        if not hi > lo:
            raise ValueError(f"window: expected (lo, hi) with hi > lo, got {window}")
        image = image.clamp(lo, hi)
    image = (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)
    if image.shape != (size, size):
        image = torch.nn.functional.interpolate(image[None, None], size=(size, size),
                                                mode="bilinear", antialias=True,
                                                align_corners=False)[0, 0]
    if circle:
        image = image * disc_mask(size)
    return image.clamp(min=0.0).to(torch.float32)


class CTImageFolder(Dataset):
    """Every supported file in ``folder`` (sorted by name, not recursive) as a ground-truth image,
    prepared by :func:`prepare_image` and simulated on access. Noise (if ``ct.noise > 0``) is
    seeded by ``(seed, index)``."""

    def __init__(self, folder, ct: LimitedAngleCT, *, window=None, seed: int = 0):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"folder: {folder} is not a directory")
        self.files = sorted(p for p in folder.iterdir()
                            if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        if not self.files:
            raise ValueError(f"folder: no image files ({', '.join(SUPPORTED_SUFFIXES)}) in "
                             f"{folder}")
        self.ct, self.window, self.seed = ct, window, seed

    def __len__(self):
        return len(self.files)

    def ground_truth(self, index: int) -> torch.Tensor:
        return prepare_image(load_image(self.files[index]), self.ct.size, window=self.window,
                             circle=self.ct.circle)

    def __getitem__(self, index):
        # Errors name the file, also when raised in a DataLoader worker (the loader re-raises
        # them in the main process with the worker's traceback as text).
        path = self.files[index]
        try:
            target = self.ground_truth(index)
            fbp = self.ct.simulate(target[None],
                                   generator=item_generator(self.seed + 1, index))
        except (ImageFileError, ImportError):
            raise
        except Exception as error:
            raise ImageFileError(f"{path}: {type(error).__name__}: {error}") from error
        return fbp, target[None]

    def __repr__(self):
        return f"CTImageFolder({len(self)} files from {os.fspath(self.files[0].parent)}, {self.ct})"
