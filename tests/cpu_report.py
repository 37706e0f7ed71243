"""Opt-in `--cpu-report FILE`: each test's CPU seconds (user + sys, this process and its finished children), slowest first.

Load it with `-p tests.cpu_report`. Setup, call and teardown count together; a session fixture's setup counts for the
first test that asks for it, its teardown for the last test (the `preloaded_python` server's children, which it
waits for when it exits: the GPU-queue smoke test's commands and test_nodes' nodes).
"""

import json
import resource
import time

import pytest

_COSTS: dict[str, dict[str, float]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-report", metavar="FILE", default=None, help="write each test's CPU seconds to FILE (JSON)")


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    if not item.config.getoption("--cpu-report"):
        yield
        return
    own, children, wall = *_cpu(), time.perf_counter()
    yield
    own_after, children_after = _cpu()
    _COSTS[item.nodeid] = {
        "cpu_s": round(own_after - own + children_after - children, 3),
        "children_cpu_s": round(children_after - children, 3),
        "wall_s": round(time.perf_counter() - wall, 3),
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--cpu-report")
    if path:
        ordered = dict(sorted(_COSTS.items(), key=lambda kv: -kv[1]["cpu_s"]))
        own, children = _cpu()
        with open(path, "w") as handle:
            json.dump({"total_cpu_s": round(own + children, 1), "tests": ordered}, handle, indent=1)
