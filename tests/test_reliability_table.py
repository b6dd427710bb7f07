"""tests/write_reliability_table.py: how recorded cases become rows, and when nothing is written."""

import importlib.util
import pathlib
from types import SimpleNamespace

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent / "write_reliability_table.py"


@pytest.fixture(scope="module")
def writer():
    spec = importlib.util.spec_from_file_location("write_reliability_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(nodeid, when="call", outcome="passed", props=()):
    return SimpleNamespace(nodeid=nodeid, when=when, passed=outcome == "passed", failed=outcome == "failed",
                           skipped=outcome == "skipped", user_properties=list(props))  # fmt: skip


def test_cases_become_rows_grouped_by_area(writer):
    c = writer.Collector()
    case = lambda area, text, outcome="refused | named": ("reliability", {"area": area, "case": text, "outcome": outcome})  # noqa: E731
    c.pytest_runtest_logreport(report("tests/a/test_x.py::test_one[p]", props=[case("ops", "bad index"), ("other", 1)]))
    c.pytest_runtest_logreport(report("tests/b/test_y.py::test_two", props=[case("recipe", "bad flag", "usage error: \"--a\"")]))
    c.pytest_runtest_logreport(report("tests/a/test_x.py::test_three", props=[case("ops", "empty")]))
    c.pytest_runtest_logreport(report("tests/b/test_y.py::test_two[q]", props=[case("recipe", "bad value", "usage error: \"--b\"")]))
    c.pytest_runtest_logreport(report("tests/a/test_x.py::test_one[q]", props=[case("ops", "bad dtype")]))
    assert not c.problems and len(c.cases) == 5
    text = writer.table(c.cases, 5, "python tests/write_reliability_table.py")
    summary, detail = text.split("## Every case")
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [
        "| ops | bad index; bad dtype | refused \\| named | `test_x.py::test_one` |",
        "| ops | empty | refused \\| named | `test_x.py::test_three` |",
        "| recipe | bad flag; bad value | usage error (each case below) | `test_y.py::test_two` |",
    ]
    assert '| recipe | bad value | usage error: "--b" |' in detail and "5 cases in 5 tests" in text


def test_failures_skips_and_malformed_cases_block_writing(writer):
    c = writer.Collector()
    c.pytest_runtest_logreport(report("t.py::a", outcome="failed", props=[("reliability", {"area": "x", "case": "y", "outcome": "z"})]))
    c.pytest_runtest_logreport(report("t.py::b", when="setup", outcome="skipped"))
    c.pytest_runtest_logreport(report("t.py::c", props=[("reliability", {"area": "x", "case": "y"})]))
    assert c.cases == [] and len(c.problems) == 3 and "must be a dict" in c.problems[2]


def test_only_tests_that_take_record_property_are_run(writer):
    items = [SimpleNamespace(fixturenames=["tmp_path", "record_property"]), SimpleNamespace(fixturenames=["tmp_path"])]
    deselected = []
    config = SimpleNamespace(hook=SimpleNamespace(pytest_deselected=lambda items: deselected.extend(items)))
    c = writer.Collector()
    kept = list(items)
    c.pytest_collection_modifyitems(config, kept)
    assert kept == items[:1] and deselected == items[1:] and c.tests == 1
