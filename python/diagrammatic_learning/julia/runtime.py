"""Starting Julia from Python (juliacall) with this library's Julia package, once per process.

juliacall reads ``juliapkg.json`` files of installed Python packages to know which Julia
packages to install. The registry packages this library needs (Flux, SafeTensors, JLD2, …) are
declared statically in ``diagrammatic_learning/juliapkg.json``. The local package
``DiagrammaticLearning`` (the ``julia/`` folder) cannot be: juliapkg resolves a relative
``path`` against the folder of the ``juliapkg.json`` that names it, and that folder sits at
different distances from the Julia sources in a source checkout (``python/diagrammatic_learning``
→ ``../../julia``) and in an installed wheel (``site-packages/diagrammatic_learning`` →
``_data/julia``). So :func:`declare_package` records it at start-up, with the absolute path that
``resources.data_path("julia")`` finds in either layout, as a ``dev`` dependency in juliapkg's
project file (``juliapkg.add``); it writes only when the recorded path differs.

juliacall must be imported before torch in a process that uses both: juliacall warns that the
other order can segfault (pytorch/pytorch#78829). This module imports neither at import time;
call :func:`start` early, before ``import torch``, in programs that use both.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Iterator

from ..resources import data_path

JULIA_PACKAGE = "DiagrammaticLearning"
JULIA_PACKAGE_UUID = "91867391-8385-4a74-ba33-4988f7ea223d"
JULIA_COMPAT = "1.10"
MIN_JULIA = (1, 10)


class JuliaUnavailable(RuntimeError):
    """Raised when the Flux.jl backend cannot run here; the message says why."""


_state: dict[str, Any] = {"module": None, "error": None}


@dataclass(frozen=True)
class Availability:
    """Whether the Flux.jl backend can run here: false when it cannot, and ``reason`` says why (or where Julia is).

    ``if julia.is_available():`` tests it; ``ok, reason = julia.is_available()`` unpacks it.
    """

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok

    def __iter__(self) -> Iterator[Any]:
        return iter((self.ok, self.reason))

    def __str__(self) -> str:
        return self.reason


def package_spec() -> dict[str, Any]:
    """How juliapkg should know the local Julia package: its UUID, its absolute path, as a dev dependency."""
    return {"uuid": JULIA_PACKAGE_UUID, "dev": True, "path": str(data_path("julia").resolve())}


def declare_package() -> None:
    """Record the local Julia package in juliapkg's project file, unless it is already there as it should be."""
    import juliapkg
    from juliapkg import deps

    spec = package_spec()
    current = deps.load_cur_deps().get("packages", {}).get(JULIA_PACKAGE)
    if current != spec:
        juliapkg.add(JULIA_PACKAGE, JULIA_PACKAGE_UUID, dev=True, path=spec["path"])


def _version_of(executable: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.split()
    if len(words) < 3 or words[:2] != ["julia", "version"]:
        return None
    try:
        return tuple(int(p) for p in words[2].split("-")[0].split(".")[:3])
    except ValueError:
        return None


def _find_julia() -> tuple[str | None, str]:
    """A Julia executable ≥ 1.10 that juliacall would use, or ``JULIAPKG_DOWNLOAD`` when there is none
    and juliapkg may download one (juliacall's convention: ``pip install`` plus a first start sets
    Julia up), or None and why not (a download is forbidden by ``NO_DOWNLOAD_VARIABLE`` or
    ``PYTHON_JULIAPKG_OFFLINE``)."""
    exe = os.environ.get("PYTHON_JULIACALL_EXE") or os.environ.get("PYTHON_JULIAPKG_EXE")
    if exe:
        version = _version_of(exe)
        if version is None:
            return None, f"{exe} (from the environment) is not a Julia executable"
        if version < MIN_JULIA:
            return None, f"{exe} is Julia {'.'.join(map(str, version))}; the Flux.jl backend needs Julia ≥ 1.10"
        return exe, f"Julia {'.'.join(map(str, version))} at {exe}"
    try:
        from juliapkg.compat import Compat
        from juliapkg.find_julia import find_julia
        from juliapkg.state import STATE

        found, version = find_julia(compat=Compat.parse(JULIA_COMPAT), prefix=STATE.get("install"), install=False)
        return found, f"Julia {version} at {found}"
    except Exception:  # juliapkg says only "could not find Julia"; look on the PATH to say more
        pass
    on_path = shutil.which("julia")
    version = _version_of(on_path) if on_path else None
    if version is not None and version >= MIN_JULIA:
        return on_path, f"Julia {'.'.join(map(str, version))} at {on_path}"
    found = ("no Julia ≥ 1.10 found (on the PATH, through juliaup, or PYTHON_JULIAPKG_EXE)" if version is None else
             f"the Julia on the PATH ({on_path}) is {'.'.join(map(str, version))}; the Flux.jl backend needs ≥ 1.10")
    forbidden = _download_forbidden()
    if forbidden:
        return None, f"{found}, and {forbidden}; install one, for instance with juliaup"
    return JULIAPKG_DOWNLOAD, (f"{found}: juliapkg will download one when Julia first starts (set "
                               f"{NO_DOWNLOAD_VARIABLE}=1 to forbid this)")


NO_DOWNLOAD_VARIABLE = "DIAGRAMMATIC_LEARNING_NO_JULIA_DOWNLOAD"
JULIAPKG_DOWNLOAD = "juliapkg download"  # stands for the Julia juliapkg will install


def _download_forbidden() -> str:
    """Why juliapkg may not download Julia here, or "" when it may (juliacall's default)."""
    if os.environ.get(NO_DOWNLOAD_VARIABLE, "").lower() in ("1", "yes", "true"):
        return f"{NO_DOWNLOAD_VARIABLE} forbids downloading one"
    if os.environ.get("PYTHON_JULIAPKG_OFFLINE", "").lower() in ("1", "yes", "true"):
        return "PYTHON_JULIAPKG_OFFLINE forbids downloading one"
    return ""


def is_available() -> Availability:
    """Whether the Flux.jl backend can run in this process (a falsy ``Availability`` if not), and why.

    Cheap and side-effect free: it never starts Julia nor downloads anything. Without a Julia
    ≥ 1.10 it says juliapkg will download one at the first start, as juliacall does, unless the
    environment variable ``DIAGRAMMATIC_LEARNING_NO_JULIA_DOWNLOAD=1`` (or
    ``PYTHON_JULIAPKG_OFFLINE``) forbids it. Reasons it gives: juliacall is not installed; no Julia
    ≥ 1.10 is found and downloading one is forbidden; the Julia packages are not installed and
    ``PYTHON_JULIAPKG_OFFLINE`` forbids installing them; an earlier start failed.
    """
    if _state["module"] is not None:
        return Availability(True, "Julia is running with the DiagrammaticLearning package")
    if _state["error"] is not None:
        return Availability(False, _state["error"])
    if importlib.util.find_spec("juliacall") is None:
        return Availability(False, "juliacall is not installed: pip install 'diagrammatic-learning[julia]'")
    exe, where = _find_julia()
    if exe is None:
        return Availability(False, where)
    offline = os.environ.get("PYTHON_JULIAPKG_OFFLINE", "").lower() in ("yes", "true", "1")
    if offline and not _packages_installed():
        return Availability(False, ("the Julia packages (Flux, SafeTensors, JLD2, DiagrammaticLearning) are not "
                                    "installed in juliacall's environment and PYTHON_JULIAPKG_OFFLINE forbids "
                                    "installing them"))
    return Availability(True, where)


def _packages_installed() -> bool:
    """Whether juliapkg's environment is resolved with the current declarations (so no download is needed)."""
    try:
        from juliapkg import deps

        current = deps.load_cur_deps().get("packages", {}).get(JULIA_PACKAGE)
        return current == package_spec() and bool(deps.can_skip_resolve())
    except Exception:
        return False


def start() -> Any:
    """Start Julia (once) and load the DiagrammaticLearning package; returns the Julia module.

    The first call may take minutes: juliacall installs the Julia packages when they are missing
    (unless offline) and Julia compiles them. Raises :class:`JuliaUnavailable` with the reason
    when the backend cannot run.
    """
    if _state["module"] is not None:
        return _state["module"]
    available, reason = is_available()
    if not available:
        raise JuliaUnavailable(reason)
    try:
        declare_package()
        # juliacall before torch: juliacall warns that importing torch first may segfault.
        from juliacall import Main

        _state["module"] = _load_package(Main)
    except Exception as e:
        _state["error"] = f"starting Julia failed: {type(e).__name__}: {e}"
        raise JuliaUnavailable(_state["error"]) from e
    return _state["module"]


def _load_package(main: Any) -> Any:
    """``using DiagrammaticLearning``; with an environment of the user's own (``PYTHON_JULIACALL_PROJECT``)
    that lacks it, the sources are included instead (their dependencies must then be in that environment)."""
    try:
        main.seval(f"using {JULIA_PACKAGE}")
    except Exception:
        source = data_path("julia") / "src" / f"{JULIA_PACKAGE}.jl"
        main.seval(f'Base.include(Main, raw"{source}")')
    return main.seval(JULIA_PACKAGE)


def julia_module() -> Any:
    """The running Julia package (started on first use); see :func:`start`."""
    return start()
