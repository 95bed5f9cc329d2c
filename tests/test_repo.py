"""The repository keeps its promises: README commands, CI running exactly the README's test command."""
from conftest import ROOT


def _readme_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```bash")
    return lines[start + 1], lines[start + 2]


def test_readme_starts_with_setup_and_test_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines.index("```bash") < 5
    setup, tests = _readme_commands()
    assert "pip install -r requirements.txt" in setup and "src/train.py" in setup
    assert "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    _, tests = _readme_commands()
    assert tests in ci
    assert any("pip install" in ln and "requirements.txt" in ln for ln in ci)


def test_requirements_pin_what_mindspore_needs():
    req = (ROOT / "requirements.txt").read_text()
    assert "mindspore==2.10.0" in req and "numpy==1.26.4" in req
    assert "torch" not in req  # .pth files are read without torch
