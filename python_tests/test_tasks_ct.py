"""Limited-angle CT operator against scikit-image, phantoms and the CT datasets."""

import numpy as np
import pytest
import skimage.transform as skimage_transform
import torch

from helpers import ALL_DEVICES
from inn_cuda.tasks.ct import LimitedAngleCT, disc_mask, wedge_angles
from inn_cuda.tasks.data import CTImageFolder, CTPhantomDataset, load_image, prepare_image
from inn_cuda.tasks.phantoms import make_phantom, random_ellipses, shepp_logan



def _phantom(size):
    gen = torch.Generator().manual_seed(size)
    return random_ellipses(size, gen).double()


@pytest.mark.parametrize("size,circle", [(32, True), (33, True), (24, False), (31, False)])
def test_radon_matches_skimage(size, circle):
    image = _phantom(size)
    ct = LimitedAngleCT(size, circle=circle)
    expected = skimage_transform.radon(image.numpy(), theta=ct.angles.numpy(), circle=circle)
    actual = ct.radon(image)
    assert actual.shape == (ct.n_angles, ct.n_detectors)
    np.testing.assert_allclose(actual.numpy(), expected.T, rtol=0,
                               atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("size,circle,angles", [(32, True, None), (33, True, None),
                                                (24, False, None), (32, True, [10.0, 47.5, 133.0])])
def test_fbp_matches_skimage_iradon(size, circle, angles):
    ct = LimitedAngleCT(size, circle=circle, angles=angles)
    sinogram = skimage_transform.radon(_phantom(size).numpy(), theta=ct.angles.numpy(),
                                       circle=circle)
    expected = skimage_transform.iradon(sinogram, theta=ct.angles.numpy(), circle=circle,
                                        filter_name="ramp")
    actual = ct.fbp(torch.from_numpy(sinogram.T.copy())).numpy()
    disc = disc_mask(size).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual[disc], expected[disc], rtol=0, atol=1e-9 * scale)
    if circle:
        assert np.all(actual[~disc] == 0)


def test_full_angle_fbp_reconstructs_the_phantom():
    size = 48
    image = _phantom(size)
    ct = LimitedAngleCT(size, n_angles=96, missing_wedge=0.0)
    rec = ct.fbp(ct.radon(image))
    inner = disc_mask(size) & (torch.arange(size)[:, None] > 2)
    rel = (rec - image)[inner].norm() / image[inner].norm()
    assert rel < 0.15, rel


def test_wedge_angles():
    theta = wedge_angles(180, 30.0)
    # the angular gap between the last and the first measured angle (mod 180) is the wedge
    assert theta.numel() == 151 and float(theta.min()) == 15.0 and float(theta.max()) == 165.0
    centred = wedge_angles(180, 30.0, wedge_center=90.0)
    assert not bool(((centred > 75) & (centred < 105)).any()) and centred.numel() == 151
    assert wedge_angles(12, 0.0).numel() == 12
    with pytest.raises(ValueError, match="missing_wedge"):
        wedge_angles(10, 180.0)
    # 64 angles 2.8125 degrees apart, minus 0 .. 14.06 (6) and 165.9 .. 177.2 (5)
    assert LimitedAngleCT(64).n_angles == 53


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_batched_float32_matches_float64_per_image(device):
    size = 32
    ct = LimitedAngleCT(size)
    images = torch.stack([_phantom(size), torch.from_numpy(np.ascontiguousarray(
        _phantom(size).numpy()[::-1, :]))])[:, None]
    single = torch.stack([ct.simulate(im) for im in images])
    batched = ct.simulate(images.to(device, torch.float32)).cpu().double()
    assert batched.shape == (2, 1, size, size)
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5 * float(single.abs().max()))


@pytest.mark.slow
def test_radon_and_fbp_are_differentiable():
    ct = LimitedAngleCT(8, angles=[0.0, 50.0, 100.0])
    image = torch.rand(8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda im: ct.fbp(ct.radon(im)), (image,))


def test_noise_is_seeded_and_relative():
    ct = LimitedAngleCT(32, noise=0.01)
    image = _phantom(32)
    a = ct.simulate(image, torch.Generator().manual_seed(1))
    b = ct.simulate(image, torch.Generator().manual_seed(1))
    c = ct.simulate(image, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    sino = ct.radon(image)
    noise = ct.add_noise(sino, torch.Generator().manual_seed(3)) - sino
    assert abs(float(noise.std()) / float(sino.abs().max()) - 0.01) < 0.001


def test_bad_inputs_are_named():
    ct = LimitedAngleCT(16)
    with pytest.raises(ValueError, match="images"):
        ct.radon(torch.zeros(2, 15, 16))
    with pytest.raises(ValueError, match="sinogram"):
        ct.fbp(torch.zeros(3, 16))
    with pytest.raises(TypeError, match="images"):
        ct.radon(torch.zeros(16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="size"):
        LimitedAngleCT(4)


@pytest.mark.parametrize("kind", ["ellipses", "shepp_logan", "mixed"])
def test_phantoms_are_seeded_inside_the_disc_and_nonnegative(kind):
    a = make_phantom(kind, 40, torch.Generator().manual_seed(5))
    b = make_phantom(kind, 40, torch.Generator().manual_seed(5))
    c = make_phantom(kind, 40, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (40, 40)
    assert float(a.min()) >= 0 and 0.2 < float(a.max()) < 2.0
    assert float(a[~disc_mask(40)].abs().max()) == 0.0


def test_shepp_logan_values():
    image = shepp_logan(64)
    assert float(image[32, 32]) == pytest.approx(0.2, abs=0.05)  # brain tissue
    assert float(image.max()) == pytest.approx(1.0, abs=1e-6)  # skull


def test_phantom_dataset_is_deterministic_per_index():
    ct = LimitedAngleCT(16, noise=0.02)
    eager = CTPhantomDataset(5, ct, seed=7, batch=2)
    lazy = CTPhantomDataset(5, ct, seed=7, precompute=False)
    assert len(eager) == 5
    for i in (0, 3, -1):
        x, y = eager[i]
        assert x.shape == y.shape == (1, 16, 16) and x.dtype == torch.float32
        lx, ly = lazy[i]
        torch.testing.assert_close(ly, y)
        torch.testing.assert_close(lx, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(eager[1][0], ct.fbp(ct.add_noise(
        ct.radon(eager[1][1]), torch.Generator().manual_seed(8 * 1_000_003 + 1))))
    other = CTPhantomDataset(2, ct, seed=8)
    assert not torch.equal(other[0][1], eager[0][1])
    with pytest.raises(IndexError):
        eager[5]
    inputs, targets = lazy.tensors()
    assert inputs.shape == targets.shape == (5, 1, 16, 16)


def _write_pngs_and_npy(folder):
    from PIL import Image
    gradient = np.tile(np.linspace(0, 255, 40), (40, 1)).astype(np.uint8)
    Image.fromarray(gradient).save(folder / "a.png")
    Image.fromarray(np.stack([gradient] * 3, -1)).save(folder / "b_rgb.png")
    np.save(folder / "c.npy", np.linspace(-1000, 1000, 24 * 24).reshape(24, 24))
    (folder / "notes.txt").write_text("not an image")


def test_image_folder_loads_png_and_npy(tmp_path):
    _write_pngs_and_npy(tmp_path)
    ct = LimitedAngleCT(16)
    data = CTImageFolder(tmp_path, ct)
    assert [p.name for p in data.files] == ["a.png", "b_rgb.png", "c.npy"]
    for i in range(3):
        x, y = data[i]
        assert x.shape == y.shape == (1, 16, 16)
        assert float(y.min()) >= 0 and float(y.max()) <= 1.0 + 1e-6
        assert float(y[0][~disc_mask(16)].abs().max()) == 0
        torch.testing.assert_close(x, ct.simulate(y))
    torch.testing.assert_close(data[0][1], data[1][1], rtol=0, atol=1e-3)  # grey == RGB grey
    window = CTImageFolder(tmp_path, ct, window=(0.0, 1000.0)).ground_truth(2)
    # rows 0..11 of c.npy are negative: below the window, they clip to 0 (rows 0..7 at size 16)
    assert float(window[1:7, 6:10].max()) == 0.0 and float(window[10:14, 6:10].min()) > 0.2


def test_image_loading_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="folder"):
        CTImageFolder(tmp_path / "missing", LimitedAngleCT(16))
    with pytest.raises(ValueError, match="no image files"):
        CTImageFolder(tmp_path, LimitedAngleCT(16))
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_image(tmp_path / "x.gif")
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="2D"):
        load_image(tmp_path / "cube.npy")
    (tmp_path / "scan.dcm").write_bytes(b"\0" * 200)
    monkeypatch.setitem(__import__("sys").modules, "pydicom", None)
    with pytest.raises(ImportError, match="pip install pydicom"):
        load_image(tmp_path / "scan.dcm")
    with pytest.raises(ValueError, match="window"):
        prepare_image(np.zeros((4, 4)), 8, window=(1, 1))


def test_dicom_in_hounsfield_units(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = 8, 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    raw = np.arange(64, dtype=np.uint16).reshape(8, 8)
    ds.PixelData = raw.tobytes()
    ds.save_as(tmp_path / "slice.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(load_image(tmp_path / "slice.dcm"), raw * 2.0 - 1024)
    assert pydicom is not None
