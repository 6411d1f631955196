"""The juliacall bridge's parts that need no Julia: availability reasons, the package declaration,
the array layout handed to Julia, error replies, and that importing it starts nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from diagrammatic_learning import DiagramError
from diagrammatic_learning.julia import backend, runtime
from diagrammatic_learning.resources import data_path


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(runtime, "_state", {"module": None, "error": None})


def test_without_juliacall_the_reason_says_so(fresh_state, monkeypatch):
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name: None)
    available = runtime.is_available()
    assert not available and bool(available) is False  # falsy, not a (always truthy) tuple
    assert available.reason == "juliacall is not installed: pip install 'diagrammatic-learning[julia]'"
    assert tuple(available) == (False, available.reason) and str(available) == available.reason
    with pytest.raises(runtime.JuliaUnavailable, match="juliacall is not installed"):
        runtime.start()


def test_a_failed_start_is_remembered(fresh_state):
    runtime._state["error"] = "starting Julia failed: boom"
    available = runtime.is_available()
    assert not available and available.reason == "starting Julia failed: boom"


def fake_julia(tmp_path, version: str):
    exe = tmp_path / "julia"
    exe.write_text(f"#!/bin/sh\necho 'julia version {version}'\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.skipif(sys.platform == "win32", reason="the fake julia is a shell script")
def test_julia_versions_are_read_and_checked(fresh_state, monkeypatch, tmp_path):
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", fake_julia(tmp_path, "1.9.4"))
    ok, reason = runtime.is_available()
    assert not ok and "Julia 1.9.4" in reason and "≥ 1.10" in reason
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", fake_julia(tmp_path, "1.11.2"))
    available = runtime.is_available()
    assert available and available.reason == f"Julia 1.11.2 at {tmp_path / 'julia'}"
    monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "yes")
    monkeypatch.setattr(runtime, "_packages_installed", lambda: False)
    ok, reason = runtime.is_available()
    assert not ok and "PYTHON_JULIAPKG_OFFLINE" in reason
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", str(tmp_path / "missing"))
    ok, reason = runtime.is_available()
    assert not ok and "not a Julia executable" in reason


def test_the_package_is_declared_once_at_its_absolute_path(monkeypatch, tmp_path):
    recorded: dict = {}
    calls = []

    def add(name, uuid, dev=False, path=None):
        calls.append((name, uuid, dev, path))
        recorded.setdefault("packages", {})[name] = {"uuid": uuid, "dev": dev, "path": path}

    fake = types.ModuleType("juliapkg")
    fake.add = add
    fake.deps = types.SimpleNamespace(load_cur_deps=lambda: recorded)
    monkeypatch.setitem(sys.modules, "juliapkg", fake)
    monkeypatch.setitem(sys.modules, "juliapkg.deps", fake.deps)
    runtime.declare_package()
    runtime.declare_package()
    julia = data_path("julia").resolve()
    assert calls == [("DiagrammaticLearning", runtime.JULIA_PACKAGE_UUID, True, str(julia))]
    assert julia.is_absolute() and (julia / "Project.toml").is_file() and (julia / "src").is_dir()
    recorded["packages"]["DiagrammaticLearning"]["path"] = "/somewhere/else"
    runtime.declare_package()
    assert len(calls) == 2  # a moved installation is declared again


def test_arrays_reach_julia_reversed_without_a_copy():
    x = np.arange(24.0).reshape(2, 3, 4)
    y = backend.to_julia_layout(x)
    assert y.shape == (4, 3, 2) and np.shares_memory(x, y) and y.flags.f_contiguous
    assert y[3, 1, 0] == x[0, 1, 3]


def test_a_julia_error_reply_becomes_a_diagram_error():
    reply = json.dumps({"ok": False, "problems": [
        {"code": "weights-shape", "pointer": "w.safetensors#f.layers.0.weight", "message": "wrong shape"},
        {"code": "weights-missing-key", "pointer": "w.safetensors#f.layers.0.bias", "message": "missing"}]})
    with pytest.raises(DiagramError) as info:
        backend.parse_reply(reply)
    assert info.value.codes == ["weights-shape", "weights-missing-key"]
    assert info.value.pointer == "w.safetensors#f.layers.0.weight"
    ok = json.dumps({"ok": True, "result": {"equations": [["f(x) = y", 1.5]], "total": 3.0}})
    assert backend._evaluation(backend.parse_reply(ok)) == {"equations": {"f(x) = y": 1.5}, "total": 3.0}


def test_importing_the_bridge_starts_nothing():
    code = ("import sys, diagrammatic_learning.julia as j; j.is_available(); "
            "print(sorted(m for m in ('torch', 'juliacall') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_julia_juliapkg_downloads_one_unless_forbidden(fresh_state, monkeypatch):
    """juliacall's convention: with no Julia ≥ 1.10, the first start has juliapkg download one;
    DIAGRAMMATIC_LEARNING_NO_JULIA_DOWNLOAD=1 (or PYTHON_JULIAPKG_OFFLINE) forbids it, and the reason names it."""
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name: object())
    for name in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_OFFLINE", runtime.NO_DOWNLOAD_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    no_julia = types.ModuleType("juliapkg.find_julia")

    def find_julia(**kwargs):
        raise Exception("could not find Julia")

    no_julia.find_julia = find_julia
    monkeypatch.setitem(sys.modules, "juliapkg.find_julia", no_julia)
    ok, reason = runtime.is_available()
    assert ok and "juliapkg will download one" in reason and runtime.NO_DOWNLOAD_VARIABLE in reason
    monkeypatch.setenv(runtime.NO_DOWNLOAD_VARIABLE, "1")
    ok, reason = runtime.is_available()
    assert not ok and f"{runtime.NO_DOWNLOAD_VARIABLE} forbids downloading one" in reason
    monkeypatch.delenv(runtime.NO_DOWNLOAD_VARIABLE)
    monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "yes")
    ok, reason = runtime.is_available()
    assert not ok and "PYTHON_JULIAPKG_OFFLINE forbids downloading one" in reason
