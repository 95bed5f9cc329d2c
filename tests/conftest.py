"""Shared test helpers: where the reference fixtures live, and a PYNATIVE default for unit tests."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SRC = ROOT / "src"  # on sys.path through pyproject's pythonpath; subprocesses get it as PYTHONPATH


def shared_path(*parts):
    """A path inside ../shared, or skip the test with the reason when the reference folder is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference fixture {path} is absent (../shared sits beside the project only in CI "
                    f"and developer checkouts)")
    return path


@pytest.fixture(autouse=True)
def _pynative():
    """Unit tests build many networks: PYNATIVE avoids one graph compile per network.

    The previous mode is restored, so a test that switches to GRAPH mode in-process leaks nothing.
    """
    import mindspore as ms
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    yield
    ms.set_context(mode=previous)


def run_script(args, timeout=600, env=None):
    """Run a project script with the venv's Python in a subprocess; returns CompletedProcess."""
    import subprocess
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
    full_env.update(env or {})
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
