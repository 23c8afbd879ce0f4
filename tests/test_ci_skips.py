"""The CI guard of tests/support/ci_skips.py: in CI any skip fails the run, wherever it is raised."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ROOT_CONFTEST = """
from tests.support.ci_skips import register


def pytest_configure(config):
    register(config)
"""


def run_pytest(project: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if ci:
        env["CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_project(root: Path, files: dict[str, str]) -> Path:
    (root / "conftest.py").write_text(ROOT_CONFTEST)
    (root / "test_fine.py").write_text("def test_fine():\n    pass\n")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


MISSING = 'import pytest\npytest.importorskip("no_such_module_for_ci_skips")\n'

CASES = {
    # The one the old conftest hooks missed: a sub-directory's conftest skips at import.
    "conftest-importorskip": {
        "needs_tool/conftest.py": MISSING,
        "needs_tool/test_tool.py": "def test_tool():\n    pass\n",
    },
    "module-importorskip": {"test_module.py": MISSING + "def test_x():\n    pass\n"},
    "test-skip": {"test_skip.py": "import pytest\n\ndef test_x():\n    pytest.skip('no tool')\n"},
    "skip-mark": {
        "test_mark.py": "import pytest\n\n@pytest.mark.skip(reason='x')\ndef test_x():\n    pass\n"
    },
    "fixture-skip": {
        "test_fixture.py": (
            "import pytest\n\n@pytest.fixture\ndef tool():\n    pytest.skip('absent')\n\n"
            "def test_x(tool):\n    pass\n"
        )
    },
}


@pytest.mark.parametrize("case", CASES)
def test_any_skip_fails_in_ci(tmp_path: Path, case: str) -> None:
    project = make_project(tmp_path, CASES[case])
    local = run_pytest(project, ci=False)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "skipped" in local.stdout
    ci = run_pytest(project, ci=True)
    assert ci.returncode != 0, ci.stdout + ci.stderr
    assert "skipped in CI" in ci.stdout


def test_xfail_and_plain_passes_are_fine_in_ci(tmp_path: Path) -> None:
    xfail = "import pytest\n\n@pytest.mark.xfail(strict=True)\ndef test_x():\n    assert False\n"
    project = make_project(tmp_path, {"test_xfail.py": xfail})
    ci = run_pytest(project, ci=True)
    assert ci.returncode == 0, ci.stdout + ci.stderr
