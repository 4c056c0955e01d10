"""The on-disk cache heals: a missing, truncated or altered entry is detected on read, deleted and rebuilt."""

import threading

import pytest
from datasets import Dataset

from nlp_transfer.data import cache


def _build(calls: list):
    def build():
        calls.append(1)
        return Dataset.from_dict({"x": [[float(i)] * 8 for i in range(64)], "labels": list(range(64))})
    return build


def _arrow(folder):
    return next(folder.glob("*.arrow"))


@pytest.mark.parametrize("damage", [
    "truncate", "overwrite", "missing info", "missing marker",
])
def test_a_damaged_entry_is_rebuilt_not_used(damage, caplog):
    calls = []
    first, hit = cache.cached("features", "k", _build(calls))
    assert not hit and len(calls) == 1
    expected = first["x"]
    del first  # it maps the file: damage a new inode (as another process would), never the mapped one
    folder = cache.cache_root() / "features" / "k"
    arrow = _arrow(folder)
    data = bytearray(arrow.read_bytes())
    if damage in ("truncate", "overwrite"):
        if damage == "truncate":
            data = data[: len(data) // 2]
        else:  # same size, other bytes: a cache hit on garbage before
            data[-200:-100] = b"\x7f" * 100
        arrow.unlink()
        arrow.write_bytes(bytes(data))
    elif damage == "missing info":
        (folder / "dataset_info.json").unlink()
    else:
        (folder / cache.CONTENT_FILE).unlink()
    assert cache.entry_problem(folder) is not None
    caplog.set_level("WARNING")
    again, hit = cache.cached("features", "k", _build(calls))
    assert not hit and len(calls) == 2
    assert "is damaged" in caplog.text
    assert again["x"] == expected and cache.entry_problem(folder) is None
    third, hit = cache.cached("features", "k", _build(calls))
    assert hit and len(calls) == 2


def test_concurrent_builders_of_one_entry_leave_one_whole_entry():
    calls, results, errors = [], [], []

    def run():
        try:
            results.append(cache.cached("teacher", "same", _build(calls))[0])
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    folder = cache.cache_root() / "teacher"
    assert [p.name for p in folder.iterdir()] == ["same"]  # no temporary folder left
    assert cache.entry_problem(folder / "same") is None
