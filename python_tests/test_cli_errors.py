"""Every misuse of the command line ends with exit status 2 and one error line, never a
traceback: bad flags and values, bad ``--set``, an ``--out`` that cannot be written, a missing or
foreign ``--from``, bad environment variables; ``--debug`` / ``INN_CUDA_DEBUG=1`` show the
traceback. Most cases run ``main(argv)`` in this process; the environment variables, read while
the package is imported, run in subprocesses."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inn_cuda import _backend, _environment, cli

ROOT = Path(__file__).resolve().parents[1]


def _error_line(err):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def files(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"some": "thing"}))
    return {"FILE": str(a_file), "FOREIGN": str(foreign), "TMP": str(tmp_path)}


CASES = [
    # demo
    (["demo", "--device", "nonsense"], "argument --device: expected a torch device"),
    (["demo", "--device", "mps"], "argument --device: expected cpu or cuda[:index], got 'mps'"),
    (["demo", "--set", "phantom=nonsense"], "phantom: expected one of ('ellipses'"),
    (["demo", "--set", "device=nonsense"], "device: expected cpu or cuda[:index], got 'nonsense'"),
    (["demo", "--set", "task=deconv1d"], "--set task=deconv1d: the task is chosen with --task"),
    (["demo", "--set", "preset=paper"], "the preset is chosen with --preset"),
    (["demo", "--set", "nope=1"], "unknown setting 'nope'"),
    (["demo", "--set", "width=wide"], "width: cannot read 'wide' as int"),
    (["demo", "--set", "lr=nan"], "lr: expected a finite number"),
    (["demo", "--set", "noise_levels=a,b"], "noise_levels: cannot read 'a,b'"),
    (["demo", "--set", "adv_shape=star"], "adv_shape: expected 'square' or 'disk'"),
    (["demo", "--set", "blur_sigma=0"], "blur_sigma: expected a positive blur width"),
    (["demo", "--set", "=1"], "--set: expected NAME=VALUE"),
    (["demo", "--threads", "-1"], "argument --threads: expected an int >= 1, got -1"),
    (["demo", "--threads", "two"], "argument --threads: expected an int >= 1, got 'two'"),
    (["demo", "--size", "0"], "argument --size: expected an int >= 1, got 0"),
    (["demo", "--seed", "-3"], "argument --seed: expected an int >= 0, got -3"),
    (["demo", "--epochs", "1.5"], "argument --epochs: expected an int >= 0, got '1.5'"),
    (["demo", "--out", "{FILE}"], "--out: {FILE} is a file, expected a folder"),
    (["demo", "--out", "{FILE}/below"], "--out: cannot write into {FILE}/below"),
    (["demo", "--out", "/proc/inn_cuda_no/such"], "--out: cannot write into /proc/inn_cuda_no"),
    (["demo", "--task", "mri"], "invalid choice: 'mri'"),
    (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    # bench
    (["bench", "--threads", "-1"], "argument --threads: expected an int >= 1, got -1"),
    (["bench", "--min-repeats", "0"], "argument --min-repeats: expected an int >= 1, got 0"),
    (["bench", "--min-repeats", "5", "--max-repeats", "2"], "--min-repeats 5 is above"),
    (["bench", "--paper-size", "-5"], "argument --paper-size: expected an int >= 1, got -5"),
    (["bench", "--paper-size", "100"], "expected an image side divisible by 16"),
    (["bench", "--budget-s", "inf"], "argument --budget-s: expected a number >= 0, got inf"),
    (["bench", "--reference-general-max-macs", "0"], "expected a positive number, got 0"),
    (["bench", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["bench", "--from", "{TMP}/missing.json"], "--from: cannot read {TMP}/missing.json"),
    (["bench", "--from", "{FILE}"], "--from: {FILE} is not JSON"),
    (["bench", "--from", "{FOREIGN}"], "is not a results.json of inn-cuda bench"),
    (["bench", "--out", "{FILE}"], "--out: {FILE} is a file, expected a folder"),
    # top level
    ([], "the following arguments are required: command"),
    (["train"], "invalid choice: 'train'"),
    (["info", "--json", "extra"], "unrecognized arguments: extra"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0]) or "-" for c in CASES])
def test_misuse_exits_2_with_one_line(argv, message, files, capsys):
    argv = [a.format(**files) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message.format(**files) in _error_line(capsys.readouterr().err)


def test_read_only_out_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the /proc case covers it)")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--out", str(locked / "out")])
    assert exit_info.value.code == 2
    assert "--out: cannot write into" in _error_line(capsys.readouterr().err)


def test_errors_while_running_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def damaged(args):
        raise RuntimeError("checkpoint x.pt is damaged:\n  details")

    monkeypatch.setattr(cli, "_run", damaged)
    assert cli.main(["info"]) == 2
    assert _error_line(capsys.readouterr().err) == \
        "inn-cuda info: error: checkpoint x.pt is damaged: details"
    with pytest.raises(RuntimeError, match="damaged"):
        cli.main(["--debug", "info"])
    with pytest.raises(RuntimeError, match="damaged"):
        cli.main(["info", "--debug"])
    monkeypatch.setenv("INN_CUDA_DEBUG", "1")
    with pytest.raises(RuntimeError, match="damaged"):
        cli.main(["info"])
    monkeypatch.setenv("INN_CUDA_DEBUG", "sometimes")
    with pytest.raises(ValueError, match="INN_CUDA_DEBUG must be one of 1, 0, true"):
        cli.main(["info"])  # a bad value asks for tracebacks: the error is raised


def test_internal_errors_exit_1_and_point_at_debug(monkeypatch, capsys):
    def bug(args):
        raise KeyError("oops")

    monkeypatch.setattr(cli, "_run", bug)
    assert cli.main(["info"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "KeyError: 'oops'" in line and "--debug shows the traceback" in line


@pytest.mark.parametrize("orig_argv, argv0, cli", [
    (["python", "-m", "inn_cuda", "info"], "-m", True),
    (["python", "-m", "inn_cuda.benchmark"], "-m", True),
    (["/venv/bin/python", "/venv/bin/inn-cuda", "demo"], "/venv/bin/inn-cuda", True),
    (["python", "-c", "import inn_cuda"], "-c", False),
    (["python", "-m", "pytest"], "-m", False),
])
def test_bad_variable_at_import_is_one_line_only_in_the_command(monkeypatch, capsys, orig_argv,
                                                                 argv0, cli):
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.setenv("INN_CUDA_CHECK_BOUNDS", "maybe")
    monkeypatch.delenv("INN_CUDA_DEBUG", raising=False)
    message = ("environment variable INN_CUDA_CHECK_BOUNDS must be one of 1, 0, true, false, yes, no, on, off; got "
               "'maybe'")
    if cli:
        with pytest.raises(SystemExit) as exit_info:
            _environment.read_flag("INN_CUDA_CHECK_BOUNDS", True)
        assert exit_info.value.code == 2
        assert _error_line(capsys.readouterr().err) == f"inn-cuda: error: {message}"
        monkeypatch.setenv("INN_CUDA_DEBUG", "1")  # the traceback instead
    with pytest.raises(ValueError, match=re.escape(message)):
        _environment.read_flag("INN_CUDA_CHECK_BOUNDS", True)
    for value, expected in (("0", False), ("off", False), ("TRUE", True), ("", True)):
        monkeypatch.setenv("INN_CUDA_CHECK_BOUNDS", value)
        assert _environment.read_flag("INN_CUDA_CHECK_BOUNDS", True) is expected


def _start(args, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INN_CUDA_")}
    environ.update(env, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                               "")]))
    return subprocess.Popen([sys.executable, "-m", "inn_cuda", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environ, cwd=ROOT)


@pytest.mark.slow
def test_bad_environment_variables_in_real_processes():
    """Read while the package is imported: one line and status 2 in ``python -m inn_cuda``
    (INN_CUDA_BACKEND, read in Python); the traceback with INN_CUDA_DEBUG=1 (INN_CUDA_CPU_ISA,
    read by the compiled extension). Two processes side by side (each imports torch)."""
    plain = _start(["info"], INN_CUDA_BACKEND="fast")
    debug = None
    if _backend._C is not None:  # the CPU ISA switch belongs to the compiled extension
        debug = _start(["info"], INN_CUDA_CPU_ISA="sse9", INN_CUDA_DEBUG="1")
    _, err = plain.communicate(timeout=300)
    assert plain.returncode == 2, err
    assert _error_line(err) == ("inn-cuda: error: environment variable INN_CUDA_BACKEND must "
                                "be one of auto, compiled, reference; got 'fast'")
    if debug is not None:
        _, err = debug.communicate(timeout=300)
        assert debug.returncode == 1 and "Traceback" in err
        assert "RuntimeError: INN_CUDA_CPU_ISA must be avx512, avx2 or scalar, got 'sse9'" in err
