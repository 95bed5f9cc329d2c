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


def test_no_sys_path_edits_in_the_package_or_the_tests():
    """The tests find the package through pyproject's pythonpath (subprocesses: PYTHONPATH), nothing else."""
    needle = "sys.path." + "insert"
    offenders = [str(p.relative_to(ROOT)) for folder in ("src/litehrnet", "tests")
                 for p in (ROOT / folder).rglob("*.py") if needle in p.read_text()]
    assert not offenders


def test_entry_points_are_the_front_ends_mains():
    import importlib
    import tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(scripts) == ["litehrnet-eval", "litehrnet-export", "litehrnet-infer", "litehrnet-train"]
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))
        command = name.split("-")[1]
        shim = (ROOT / "src" / f"{command}.py").read_text()
        assert f"from {module} import {func}" in shim and shim.count("sys.path") == 1


COMPATIBILITY_NAMES = ("data/keypoints.py", "inference.py")  # re-exports of moved modules, for merging branches


def test_readme_layout_names_every_module_of_the_package():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    package = ROOT / "src" / "litehrnet"
    missing = []
    for p in sorted(package.rglob("*.py")):
        rel = p.relative_to(package)
        if p.stem == "__init__" or str(rel) in COMPATIBILITY_NAMES:
            continue
        name = p.stem
        folder_ok = len(rel.parts) == 1 or f"{rel.parts[0]}/" in layout
        if not (folder_ok and name in layout):
            missing.append(str(rel))
    assert not missing, f"README's Layout section does not mention {missing}"
