"""Image files for CTImageFolder / load_image: every problem is an ImageFileError naming the file
(also when raised inside a DataLoader worker): NaN, infinite, complex, object, empty and (0, 0)
arrays, truncated NPY and PNG files, a PNG header that claims a decompression bomb."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from inn_cuda.tasks import CTImageFolder, LimitedAngleCT
from inn_cuda.tasks.data import ImageFileError, load_image


def _png_bytes(tmp_path, size=(16, 16)):
    path = tmp_path / "good.png"
    Image.fromarray((np.arange(size[0] * size[1]) % 251).astype(np.uint8).reshape(size)).save(
        path)
    return path.read_bytes()


def _with_header_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR claiming ``width x height`` (CRC fixed, so only the size is off)."""
    start = 8 + 8  # signature, then IHDR's length and type
    ihdr = bytearray(png[start:start + 13])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return png[:start] + bytes(ihdr) + crc + png[start + 17:]


def _npy(path, array, **kwargs):
    np.save(path, array, **kwargs)
    return path


def _truncated_npy(path):
    np.save(path, np.random.default_rng(0).random((32, 32)))
    path.write_bytes(path.read_bytes()[:500])
    return path


def _npz_as_npy(path):
    np.savez(path.with_suffix(".npz"), a=np.zeros((4, 4)))
    path.write_bytes(path.with_suffix(".npz").read_bytes())
    return path


CASES = {
    "nan": (lambda p: _npy(p / "x.npy", np.array([[0.0, np.nan], [1.0, 2.0]])),
            "1 of 4 values are NaN or infinite"),
    "inf": (lambda p: _npy(p / "x.npy", np.array([[0.0, np.inf], [-np.inf, 2.0]])),
            "2 of 4 values are NaN or infinite"),
    "complex": (lambda p: _npy(p / "x.npy", np.ones((4, 4)) * (1 + 2j)),
                "expected a real-valued image, got a complex array"),
    "object": (lambda p: _npy(p / "x.npy", np.array([[1, "a"], [None, 2.0]], dtype=object),
                              allow_pickle=True),
               "cannot be read as a NumPy .npy array (ValueError: Object arrays"),
    "text": (lambda p: _npy(p / "x.npy", np.array([["a", "b"], ["c", "d"]])),
             "expected a real-valued image, got a text array"),
    "empty": (lambda p: _npy(p / "x.npy", np.zeros((0,))), "got shape (0,)"),
    "zero by zero": (lambda p: _npy(p / "x.npy", np.zeros((0, 0))), "got shape (0, 0)"),
    "zero rows": (lambda p: _npy(p / "x.npy", np.zeros((0, 5))), "got shape (0, 5)"),
    "3d": (lambda p: _npy(p / "x.npy", np.zeros((3, 4, 5))), "expected a non-empty 2D"),
    "truncated npy": (lambda p: _truncated_npy(p / "x.npy"),
                      "cannot be read as a NumPy .npy array"),
    "npz named npy": (lambda p: _npz_as_npy(p / "x.npy"), "expected one array, got NpzFile"),
    "truncated png": (lambda p: (p / "x.png").write_bytes(_png_bytes(p, (64, 64))[:120])
                      and p / "x.png", "cannot be read as an image"),
    "not a png": (lambda p: (p / "x.png").write_bytes(b"\x89PNG garbage") and p / "x.png",
                  "cannot be read as an image (UnidentifiedImageError"),
    "bomb": (lambda p: (p / "x.png").write_bytes(_with_header_size(_png_bytes(p), 100_000,
                                                                   100_000)) and p / "x.png",
             "cannot be read as an image (DecompressionBombError"),
    "bomb warning": (lambda p: (p / "x.png").write_bytes(_with_header_size(_png_bytes(p), 10_000,
                                                                           10_000))
                     and p / "x.png", "cannot be read as an image (DecompressionBombWarning"),
    "gif": (lambda p: (p / "x.gif").write_bytes(b"GIF89a") and p / "x.gif",
            "unsupported file type '.gif'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_image_errors_name_the_file(tmp_path, case):
    make, message = CASES[case]
    path = make(tmp_path)
    with pytest.raises(ImageFileError) as info:
        load_image(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text


def test_good_files_still_load(tmp_path):
    (tmp_path / "a.png").write_bytes(_png_bytes(tmp_path, (20, 24)))
    assert load_image(tmp_path / "a.png").shape == (20, 24)
    assert load_image(_npy(tmp_path / "b.npy", np.ones((1, 5, 6), dtype=np.int16))).shape == \
        (5, 6)


@pytest.mark.parametrize("workers", [0, 1])
def test_folder_errors_name_the_file_also_from_loader_workers(tmp_path, workers):
    np.save(tmp_path / "a_good.npy", np.random.default_rng(0).random((16, 16)))
    np.save(tmp_path / "b_bad.npy", np.full((16, 16), np.nan))
    data = CTImageFolder(tmp_path, LimitedAngleCT(16))
    loader = DataLoader(data, batch_size=1, num_workers=workers)
    with pytest.raises(ImageFileError, match=str(tmp_path / "b_bad.npy")):
        for _ in loader:
            pass
    fbp, target = data[0]
    assert torch.isfinite(fbp).all() and torch.isfinite(target).all()
