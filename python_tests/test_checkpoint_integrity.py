"""Checkpoints carry a SHA-256 digest of their payload, checked on load and on resume (torch does
not verify the zip CRC, so a flipped bit would otherwise resume silently); checkpoints of the
format before digests load with a warning; temporary files a killed writer left are removed on
the next save or resume."""

import os
import struct
import subprocess
import sys
import zipfile

import pytest
import torch

from inn_cuda.train import CheckpointError, fit_point
from inn_cuda.train import checkpoint as ckpt

from train_helpers import loaders, point_mlp


def _record_offsets(path):
    """{name: (offset of its data in the file, size)} of every record of a torch.save zip."""
    offsets = {}
    with open(path, "rb") as raw, zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            raw.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", raw.read(4))
            offsets[info.filename] = (info.header_offset + 30 + name_len + extra_len,
                                      info.file_size)
    return offsets


def _flip_bit(path, record_suffix, byte=0, bit=0):
    (offset, size), = [v for k, v in _record_offsets(path).items() if k.endswith(record_suffix)]
    assert size > byte
    data = bytearray(path.read_bytes())
    data[offset + byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def _trained(tmp_path):
    train, _ = loaders(n_train=64)
    fit_point(point_mlp(), train, epochs=1, run_dir=tmp_path, progress=False)
    return train, tmp_path / "checkpoint.pt"


def test_digest_is_saved_and_verified(tmp_path):
    _, path = _trained(tmp_path)
    state = ckpt.read_checkpoint(path)
    assert state["format"] == ckpt.FORMAT
    assert state["sha256"] == ckpt.payload_digest(state)


@pytest.mark.parametrize("record", ["data/0", "data/3", "data/7"])
def test_flipped_bit_in_a_tensor_record_is_caught_on_load_and_resume(tmp_path, record):
    train, path = _trained(tmp_path)
    # The zip is still readable and torch loads it: only the digest notices.
    _flip_bit(path, record, byte=1, bit=3)
    torch.load(path, weights_only=True)
    damaged = path.read_bytes()
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged"):
        ckpt.read_checkpoint(path)
    model = point_mlp(seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged"):
        fit_point(model, train, epochs=2, run_dir=tmp_path, resume=True, progress=False)
    assert path.read_bytes() == damaged
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_changed_metadata_is_caught(tmp_path):
    _, path = _trained(tmp_path)
    state = torch.load(path, weights_only=True)
    state["epoch"] = 7  # a payload edited without recomputing the digest
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="is damaged"):
        ckpt.read_checkpoint(path)


def test_checkpoint_from_before_digests_loads_with_a_warning(tmp_path):
    train, path = _trained(tmp_path)
    state = torch.load(path, weights_only=True)
    del state["sha256"]
    state["format"] = ckpt.UNVERIFIED_FORMAT
    torch.save(state, path)
    with pytest.warns(UserWarning, match=f"checkpoint {path} .* loaded unverified"):
        result = fit_point(point_mlp(), train, epochs=2, run_dir=tmp_path, resume=True,
                           progress=False)
    assert result.resumed_from == 1
    assert ckpt.read_checkpoint(path)["format"] == ckpt.FORMAT  # rewritten with a digest


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_files_are_removed_on_save_and_resume(tmp_path):
    train, path = _trained(tmp_path)
    stale = tmp_path / f".checkpoint.pt.tmp-{_dead_pid()}"
    stale.write_bytes(b"half a checkpoint, its writer was killed")
    live = tmp_path / f".checkpoint.pt.tmp-{os.getppid()}"  # a running process: not touched
    live.write_bytes(b"being written")
    fit_point(point_mlp(), train, epochs=2, run_dir=tmp_path, resume=True, progress=False)
    assert not stale.exists() and live.exists()
    stale.write_bytes(b"again")
    ckpt.save_checkpoint({"epoch": 0}, path)
    assert not stale.exists() and live.exists()


def test_sigkill_during_a_write_leaves_a_temporary_that_resume_removes(tmp_path):
    train, path = _trained(tmp_path)
    good = path.read_bytes()
    script = (
        "import os, signal, sys, torch\n"
        "from inn_cuda.train import checkpoint as ckpt\n"
        "def write(file):\n"
        "    file.write(b'partial')\n"
        "    file.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"ckpt.atomic_write({str(path)!r}, write)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=120)
    assert done.returncode == -9
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint.pt.tmp-")]
    assert len(leftovers) == 1 and path.read_bytes() == good
    fit_point(point_mlp(), train, epochs=2, run_dir=tmp_path, resume=True, progress=False)
    assert not leftovers[0].exists()


def test_saved_study_stages_are_verified_too(tmp_path):
    """The demo's saved stages (data splits, failure cases) go through the same digest."""
    from inn_cuda.experiment import study

    path = tmp_path / "cases.pt"
    cases = {"clean": dict(inputs=torch.rand(2, 1, 8, 8), targets=torch.rand(2, 1, 8, 8))}
    study._save(path, cases)
    loaded = ckpt.load_verified(path)
    assert torch.equal(loaded["clean"]["inputs"], cases["clean"]["inputs"])
    _flip_bit(path, "data/1", byte=5, bit=6)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged"):
        study._load_cases(path)
