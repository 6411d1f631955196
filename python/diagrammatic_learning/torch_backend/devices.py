"""The ``--device`` option: ``cpu``, ``cuda`` or ``cuda:N``, checked against what this machine has."""

from __future__ import annotations

import re

import torch

from ..errors import DiagramError


def resolve_device(text: str | None, option: str = "--device") -> torch.device:
    """The torch device ``text`` names; None means CUDA when available, else the CPU.

    ``bad-value`` naming the option for anything else, or for a GPU this machine lacks.
    """
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", text)
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise DiagramError.one("bad-value", option, f"{option} is cpu, cuda or cuda:N, not {text!r}")
    if m.group(1) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DiagramError.one("bad-value", option, f"{option} {text}: no CUDA device is available here "
                                                    f"(torch {torch.__version__}, built with CUDA "
                                                    f"{torch.version.cuda or 'none'})")
    index = int(m.group(2) or 0)
    if index >= torch.cuda.device_count():
        raise DiagramError.one("bad-value", option, f"{option} {text}: this machine has "
                                                    f"{torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return torch.device("cuda", index)
