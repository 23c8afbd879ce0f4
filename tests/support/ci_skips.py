"""In CI nothing may skip: a skip there means a missing tool or package, so it fails the run.

Registered by ``tests/conftest.py`` as a plugin of its own (``register``), not as conftest
hooks: a conftest's hooks only see nodes under its directory as pytest has loaded them, and
missed a skip raised while a sub-directory's ``conftest.py`` loads (``importorskip`` in
tests/peer/conftest.py skipped 128 tests silently). Three layers:

- a skipped test is reported as failed;
- a skipped collector (a module or a directory whose conftest skips) is reported as a
  collection error;
- anything reported as skipped all the same (another plugin's report) makes the exit
  status "tests failed", with the list printed in the summary.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

PLUGIN_NAME = "metered-realtime-no-skips-in-ci"


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def register(config: pytest.Config) -> None:
    """Register the plugin (once) for the whole session."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(NoSkipsInCI(), PLUGIN_NAME)


def _message(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, line, reason = longrepr
        return f"{path}:{line}: {reason}"
    return str(longrepr)


class NoSkipsInCI:
    """The hooks; ``skipped`` lists every skip that still got reported as one."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = "skipped in CI, which must have everything installed: " + _message(
                report.longrepr
            )
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        if in_ci() and report.skipped:
            report.outcome = "failed"
            report.longrepr = (
                f"{collector.nodeid or collector.path} skipped in CI, which must have "
                f"everything installed: {_message(report.longrepr)}"
            )
        return report

    def _note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append(f"{report.nodeid or '<session>'}: {_message(report.longrepr)}")

    @pytest.hookimpl(trylast=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if in_ci() and self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if in_ci() and self.skipped:
            terminalreporter.section("skipped in CI (fails the run)", red=True)
            for line in self.skipped:
                terminalreporter.line(line)
