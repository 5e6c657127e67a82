"""argparse types and checks shared by the ``inn-cuda`` commands: a misuse is reported by
argparse as one line naming the flag, with exit status 2."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import torch


def _number(kind, text: str, low, inclusive: bool, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or value < low or (
            value == low and not inclusive):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, 1, True, "an int >= 1")


def nonnegative_int(text: str) -> int:
    return _number(int, text, 0, True, "an int >= 0")


def positive_float(text: str) -> float:
    return _number(float, text, 0.0, False, "a positive number")


def nonnegative_float(text: str) -> float:
    return _number(float, text, 0.0, True, "a number >= 0")


def torch_device(text: str) -> str:
    """A device string torch reads as cpu or cuda[:index] (whether this machine has that GPU
    is the command's check, with its own message)."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu or cuda[:index], got {text!r}")
    return text


def writable_folder(parser: argparse.ArgumentParser, flag: str, path) -> Path:
    """``path`` as a folder the command can write into (created if missing), else
    ``parser.error`` naming ``flag``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        parser.error(f"{flag}: {path} is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        parser.error(f"{flag}: cannot write into {path} ({error.strerror or error})")
    if not os.access(path, os.W_OK | os.X_OK):
        parser.error(f"{flag}: {path} is not writable")
    return path
