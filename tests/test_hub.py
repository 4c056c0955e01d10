"""Pushing to the Hub, against a fake Hub on 127.0.0.1 (tests/hub_server.py): what arrives, and the errors."""

import json
import re
import shutil
import socket
from pathlib import Path

import pytest
from conftest import toy_sentences, write_csv
from hub_server import FakeHub
from huggingface_hub import ModelCard
from huggingface_hub import constants as hub_constants

import nlp_transfer
from nlp_transfer import HubError, RecipeError, push_to_hub
from nlp_transfer.cli import main
from nlp_transfer.outputs.export import publishable_recipe

TOKEN = "hf_TestSecretToken0123456789"
_REAL_CONNECT = socket.socket.connect


def _loopback_only(sock, address):
    """No network, ever: only the fake Hub on 127.0.0.1 may be reached."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
        raise ConnectionRefusedError(f"test tried to reach {address}")
    return _REAL_CONNECT(sock, address)


def _toy_recipe(model_dir: str, folder: Path, strategy: str, **output) -> dict:
    return {
        "model": {"name": model_dir, "max_length": 32},
        "task": {"type": "text-classification"},
        "data": {"files": {"train": write_csv(folder / "train.csv", toy_sentences(48, seed=1)),
                           "validation": write_csv(folder / "validation.csv", toy_sentences(16, seed=2))}},
        "strategy": {"name": strategy},
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "seed": 7, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "out"), **output},
    }


@pytest.fixture(scope="module")
def hub_env():
    """A fake Hub, with huggingface_hub pointed at it: online, xet off (basic LFS), our token, loopback only."""
    with FakeHub(TOKEN) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        mp.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)  # the fake speaks the basic LFS transfer, not xet
        mp.setattr(hub_constants, "ENDPOINT", hub.url)
        mp.setenv("HF_ENDPOINT", hub.url)
        mp.setenv("HF_TOKEN", TOKEN)
        mp.setattr(socket.socket, "connect", _loopback_only)
        yield hub


@pytest.fixture
def hub(hub_env):
    hub_env.reset()
    yield hub_env
    assert hub_env.unexpected() == []
    assert len(hub_env.requests) < 50  # no runaway retry loop


@pytest.fixture(scope="module")
def full_run(hub_env, tiny_model_dir, tmp_path_factory):
    """A full fine-tune whose recipe pushes it (output.push_to_hub) after the run."""
    folder = tmp_path_factory.mktemp("push-full")
    recipe = _toy_recipe(tiny_model_dir, folder, "full", push_to_hub={"repo_id": "tester/toy-full", "private": True})
    hub_env.reset()
    out = nlp_transfer.train(recipe)
    return out, list(hub_env.requests), {k: v for k, v in hub_env.repos.items()}


@pytest.fixture(scope="module")
def lora_out(tiny_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("push-lora")
    return nlp_transfer.train(_toy_recipe(tiny_model_dir, folder, "lora")).output_dir


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_token_only_in_authorization(requests):
    for request in requests:
        assert TOKEN not in request.path and TOKEN.encode() not in request.body, request.path
        assert all(TOKEN not in v for k, v in request.headers.items() if k != "authorization"), request.path
        assert request.headers.get("authorization") in (None, f"Bearer {TOKEN}"), request.path


# ------------------------------------------------------------------------------------------- what arrives

def test_recipe_push_uploads_the_folder_byte_for_byte(full_run):
    out, requests, repos = full_run
    repo = repos["tester/toy-full"]
    assert repo.private
    local = _tree(out.output_dir)
    # byte for byte, card included (its id already is the pushed repo); recipe.yaml as published: file names, no local paths
    local["recipe.yaml"] = publishable_recipe((out.output_dir / "recipe.yaml").read_text()).encode()
    assert str(out.output_dir.parent) not in repo.branches["main"]["recipe.yaml"].decode()
    assert repo.branches["main"] == local
    (commit,) = repo.commits
    assert commit["lfs"] == ["model.safetensors"]  # weights through the LFS basic transfer (batch + PUT)
    assert {"config.json", "README.md", "metrics.json", "tokenizer.json"} <= set(commit["regular"])  # base64 in the commit
    accuracy = out.metrics["validation"]["accuracy"]
    assert commit["summary"] == f"nlp_transfer: full fine-tune of {Path(out.metrics['model']).name}, validation accuracy {accuracy:.4f}"
    assert ModelCard(repo.branches["main"]["README.md"].decode()).data.model_name == "tester/toy-full"
    routes = [r.route for r in requests]
    assert {"create", "preupload", "lfs_batch", "lfs_upload", "commit"} <= set(routes)
    assert None not in routes and len(requests) < 30
    _assert_token_only_in_authorization(requests)


def test_cli_push_lora_both_makes_adapter_and_merged_repos(hub, lora_out, capsys):
    assert main(["push", str(lora_out), "--repo-id", "tester/toy-lora", "--revision", "dev"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["commits"]) == {"tester/toy-lora", "tester/toy-lora-merged"}
    adapter, merged = hub.files("tester/toy-lora", "dev"), hub.files("tester/toy-lora-merged", "dev")
    local = _tree(lora_out)
    # the pushed recipe.yaml names files and folders, never this machine's absolute paths
    published = publishable_recipe((lora_out / "recipe.yaml").read_text()).encode()
    assert str(lora_out.parent) not in adapter["recipe.yaml"].decode()
    local["recipe.yaml"] = published
    assert {k: v for k, v in adapter.items() if k != "README.md"} == {
        k: v for k, v in local.items() if not k.startswith("merged/") and k != "README.md"}
    merged_local = _tree(lora_out / "merged")
    for name in ("recipe.yaml", "metrics.json", "train_log.jsonl"):
        merged_local[name] = (lora_out / name).read_bytes()
    merged_local["recipe.yaml"] = published
    assert {k: v for k, v in merged.items() if k != "README.md"} == {k: v for k, v in merged_local.items() if k != "README.md"}
    # each card names the repos it was pushed to, in its usage code and its links to the other one
    adapter_card, merged_card = ModelCard(adapter["README.md"].decode()), ModelCard(merged["README.md"].decode())
    assert adapter_card.data.model_name == "tester/toy-lora" and adapter_card.data.library_name == "peft"
    assert 'from_pretrained(\n    "tester/toy-lora",' in adapter_card.text and "`tester/toy-lora-merged`" in adapter_card.text
    assert merged_card.data.model_name == "tester/toy-lora-merged"
    assert 'model="tester/toy-lora-merged"' in merged_card.text and "`tester/toy-lora`" in merged_card.text
    assert "out" not in {adapter_card.data.model_name, merged_card.data.model_name}
    assert hub.repos["tester/toy-lora"].commits[0]["summary"].startswith("nlp_transfer: LoRA adapter of ")
    assert hub.repos["tester/toy-lora-merged"].commits[0]["summary"].startswith("nlp_transfer: merged LoRA fine-tune of ")
    _assert_token_only_in_authorization(hub.requests)


def test_push_merged_alone_is_its_own_repo(hub, lora_out):
    commits = push_to_hub(lora_out, "tester/just-merged", what="merged", commit_message="merged only")
    assert list(commits) == ["tester/just-merged"] and list(hub.repos) == ["tester/just-merged"]
    files = hub.files("tester/just-merged")
    assert files["model.safetensors"] == (lora_out / "merged" / "model.safetensors").read_bytes()
    assert "adapter_config.json" not in files
    assert 'model="tester/just-merged"' in files["README.md"].decode()
    assert hub.repos["tester/just-merged"].commits[0]["summary"] == "merged only"


# ------------------------------------------------------------------------------------------- server errors

@pytest.mark.parametrize("route, status, message", [
    ("commit", 409, r"conflict \(409 Conflict\).*push again"),
    ("commit", 500, r"server error \(500\).*push again later"),
    ("create", 403, r"may not write to 'tester/toy-full' \(403 Forbidden\).*namespace 'tester'"),
])
def test_server_errors_become_clear_hub_errors_without_the_token(hub, full_run, route, status, message):
    hub.fail(route, status)  # the fake's error message quotes the Authorization header
    with pytest.raises(HubError, match=message) as info:
        push_to_hub(full_run[0].output_dir, "tester/toy-full")
    assert TOKEN not in str(info.value)
    if status != 500:  # server errors are not quoted; the others are, with the token scrubbed
        assert "The Hub said: injected failure for request with authorization Bearer ***" in str(info.value)
    assert hub.repos.get("tester/toy-full") is None or hub.repos["tester/toy-full"].commits == []


def test_a_rejected_token_is_a_401_hub_error(hub, full_run):
    with pytest.raises(HubError, match=r"rejected the token \(401 Unauthorized\).*HF_TOKEN or run `hf auth login`") as info:
        push_to_hub(full_run[0].output_dir, "tester/toy-full", token="hf_WrongToken999")
    assert "hf_WrongToken999" not in str(info.value) and TOKEN not in str(info.value)
    assert hub.repos == {}


def test_no_network_is_a_clear_hub_error(hub_env, full_run):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HubError, match=rf"cannot reach the Hub at http://127.0.0.1:{port} \(ConnectError"):
        push_to_hub(full_run[0].output_dir, "tester/toy-full", endpoint=f"http://127.0.0.1:{port}")


# ------------------------------------------------------------------------------------------- refused locally

@pytest.mark.parametrize("repo_id", ["toy-full", "a/b/c", "-bad/name", "user/na me", "user/name.git", "user/a--b", "", "x" * 97 + "/y"])
def test_bad_repo_ids_are_refused_before_any_request(hub, full_run, repo_id):
    with pytest.raises(HubError, match=r"repo id: (got .*expected namespace/name|missing)"):
        push_to_hub(full_run[0].output_dir, repo_id)
    assert hub.requests == []


def test_no_token_is_refused_before_any_request(hub, full_run, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubError, match=r"no Hugging Face token found: set the HF_TOKEN environment variable or run `hf auth login`"):
        push_to_hub(full_run[0].output_dir, "tester/toy-full")
    assert hub.requests == []


def test_offline_mode_is_refused(hub, full_run, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="offline mode is on"):
        push_to_hub(full_run[0].output_dir, "tester/toy-full")
    assert hub.requests == []


def _broken_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def _set_reload(passed):
    def edit(folder):
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["reload_check"]["passed"] = passed
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return edit


@pytest.mark.parametrize("name, edit, message", [
    ("failed", _set_reload(False), r"its reload check did not pass \(passed=False\)"),
    ("no-metrics", lambda f: (f / "metrics.json").unlink(), r"it has no metrics.json"),
    ("no-weights", lambda f: (f / "model.safetensors").unlink(), r"it is incomplete, missing model.safetensors or model.safetensors.index.json"),
    ("no-config", lambda f: (f / "config.json").unlink(), r"it is incomplete, missing config.json"),
])
def test_unfinished_or_unchecked_folders_are_refused(hub, full_run, tmp_path, name, edit, message):
    folder = _broken_copy(full_run[0].output_dir, tmp_path / name, edit)
    with pytest.raises(HubError, match=rf"refusing to push '{re.escape(str(folder))}': {message}"):
        push_to_hub(folder, "tester/toy-full")
    assert hub.requests == []


def test_adapter_or_merged_of_a_plain_model_is_refused(hub, full_run):
    with pytest.raises(HubError, match=r"--what adapter: .* holds one plain model, not a LoRA adapter.*use --what both"):
        push_to_hub(full_run[0].output_dir, "tester/toy-full", what="adapter")
    with pytest.raises(HubError, match=r"what: got 'all'; expected one of: both, adapter, merged"):
        push_to_hub(full_run[0].output_dir, "tester/toy-full", what="all")


def test_cli_reports_hub_errors_with_exit_code_1(hub, full_run, capsys):
    assert main(["push", str(full_run[0].output_dir), "--repo-id", "not-a-repo-id"]) == 1
    assert "error: repo id: got 'not-a-repo-id'; expected namespace/name" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the recipe key

def test_recipe_push_to_hub_is_validated(tiny_model_dir, tmp_path):
    recipe = _toy_recipe(tiny_model_dir, tmp_path, "full", push_to_hub={"repo_id": "no namespace", "what": "merged", "privat": True})
    with pytest.raises(RecipeError) as info:
        nlp_transfer.load_recipe(recipe)
    problems = "\n".join(info.value.problems)
    assert "output.push_to_hub.privat: unknown key; valid keys for 'output.push_to_hub': repo_id, private, revision, what" in problems
    assert "output.push_to_hub.repo_id: got 'no namespace'; expected namespace/name" in problems
    assert ("output.push_to_hub.what: got 'merged', but strategy 'full' writes one model; use 'both' (the whole folder), "
            "or a strategy that writes an adapter and a merged model (lora)") in problems
    with pytest.raises(RecipeError, match=r"output.push_to_hub: got 'me/x'; expected a mapping with keys repo_id, private"):
        nlp_transfer.load_recipe(_toy_recipe(tiny_model_dir, tmp_path, "full", push_to_hub="me/x"))
    ok = nlp_transfer.load_recipe(_toy_recipe(tiny_model_dir, tmp_path, "lora"), ["output.push_to_hub.repo_id=me/x", "output.push_to_hub.what=adapter"])
    assert (ok.output.push_to_hub.repo_id, ok.output.push_to_hub.what, ok.output.push_to_hub.private) == ("me/x", "adapter", False)


def test_recipe_push_without_token_fails_before_training(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    recipe = _toy_recipe(tiny_model_dir, tmp_path, "full", push_to_hub={"repo_id": "me/x"})
    with pytest.raises(HubError, match="no Hugging Face token found"):
        nlp_transfer.train(recipe)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()
