"""Push a finished output folder to the Hugging Face Hub (``nlp-transfer push``).

Only a folder whose reload check passed is pushed. A LoRA output holds two models: the
adapter (the folder itself) and, with ``strategy.merge`` on, the merged model in ``merged/``.
``what="both"`` pushes the adapter to ``repo_id`` and the merged model to its own repo,
``repo_id + "-merged"`` (see ``cards.MERGED_SUFFIX`` for why not a subfolder). Each repo gets
the folder's own card, retargeted to the repo ids it was actually pushed to.

Everything goes through huggingface_hub (``create_repo``, ``upload_folder``); the token is
resolved by huggingface_hub (``HF_TOKEN``, then the ``hf auth login`` token file) and never
logged or shown in an error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, get_token
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HfHubHTTPError

from ..errors import HubError
from ..models.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MERGED
from ..outputs.cards import MERGED_SUFFIX, retarget_card
from ..outputs.export import publishable_recipe
from ..recipe.validate import repo_id_problem
from ..strategies.registry import STRATEGIES

logger = logging.getLogger(__name__)

WHAT = ("both", "adapter", "merged")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_RUN_FILES = ("recipe.yaml", "metrics.json", "train_log.jsonl")  # the merged repo carries its run's files too


@dataclass
class _Upload:
    """One repo's worth of a push: which files go where, under which card and commit message."""

    kind: str
    repo_id: str
    files: dict[str, Path]
    readme: str
    message: str


def require_token(token: str | None = None) -> str:
    """The token to push with: ``token``, else what huggingface_hub finds (``HF_TOKEN``, ``hf auth login``).

    Raises:
        HubError: No token anywhere.
    """
    token = token or get_token()
    if not token:
        raise HubError("no Hugging Face token found: set the HF_TOKEN environment variable or run `hf auth login` "
                       "with a token that has write access (https://huggingface.co/settings/tokens)")
    return token


def push_to_hub(output_dir: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                what: str = "both", token: str | None = None, commit_message: str | None = None,
                endpoint: str | None = None) -> dict[str, str]:
    """Push a finished output folder (weights, tokenizer, card, recipe, metrics) to the Hub.

    Args:
        output_dir: An ``output.dir`` written by ``train``; its reload check must have passed.
        repo_id: ``namespace/name`` of the model repo; created if missing.
        private: Create the repo private (an existing repo keeps its visibility).
        revision: Branch to commit to (created from main if missing); default main.
        what: ``both``, ``adapter`` or ``merged``: for a LoRA output, which of its two models to push
            (``both``: the adapter to ``repo_id``, the merged model to ``repo_id + "-merged"``).
            Other outputs hold one model; ``both`` pushes it.
        token: A Hub token; by default huggingface_hub's (``HF_TOKEN``, then ``hf auth login``).
        commit_message: Defaults to what was trained and its validation score.
        endpoint: The Hub URL; by default ``HF_ENDPOINT`` or https://huggingface.co.

    Returns:
        The commit URL of each repo pushed, by repo id.

    Raises:
        HubError: Invalid repo id or folder, no token, or the Hub refused or could not be reached.
    """
    uploads = _plan(Path(output_dir).expanduser(), repo_id, what, commit_message)
    token = require_token(token)
    if hub_constants.is_offline_mode():
        raise HubError("offline mode is on (HF_HUB_OFFLINE=1), so nothing can be pushed; unset HF_HUB_OFFLINE and try again")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or hub_constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    commits = {}
    for upload in uploads:
        try:
            commits[upload.repo_id] = _push_one(api, upload, private, revision)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clear, token-free HubError
            raise HubError(_scrub(_explain(exc, upload.repo_id, revision, endpoint), token)) from None
        logger.info("Pushed the %s to %s/%s (%s)", upload.kind, endpoint, upload.repo_id, commits[upload.repo_id])
    return commits


def push_after_run(output_dir: Path, push) -> dict[str, str]:
    """``output.push_to_hub`` of a recipe: push a run's output, saying how to retry if it fails."""
    try:
        return push_to_hub(output_dir, push.repo_id, private=push.private, revision=push.revision, what=push.what)
    except HubError as exc:
        retry = f"nlp-transfer push {output_dir} --repo-id {push.repo_id} --what {push.what}"
        raise HubError(f"{exc}\nThe trained model is saved in '{output_dir}'; push it later with: {retry}") from None


def _plan(folder: Path, repo_id: str, what: str, commit_message: str | None) -> list[_Upload]:
    """Check the folder and decide what goes to which repo, all before any request."""
    if problem := repo_id_problem(repo_id):
        raise HubError(f"repo id: {problem}")
    if what not in WHAT:
        raise HubError(f"what: got {what!r}; expected one of: {', '.join(WHAT)}")
    metrics = _finished_run(folder)
    if not (folder / ADAPTER_CONFIG).is_file():
        if what != "both":
            raise HubError(f"--what {what}: '{folder}' holds one plain model, not a LoRA adapter and its merged copy; use --what both")
        _require(folder, ("config.json", "README.md"), _WEIGHTS)
        files = _files(folder)
        readme = _readme(folder, {_card_id(folder): repo_id})
        return [_Upload("model", repo_id, files, readme, commit_message or _message(metrics, "model"))]
    uploads = []
    has_merged = (folder / MERGED).is_dir()
    if what in ("both", "adapter"):
        _require(folder, (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md"), ())
        files = {rel: path for rel, path in _files(folder).items() if not rel.startswith(f"{MERGED}/")}
        own = _card_id(folder)
        readme = _readme(folder, {own: repo_id, own + MERGED_SUFFIX: repo_id + MERGED_SUFFIX})
        uploads.append(_Upload("adapter", repo_id, files, readme, commit_message or _message(metrics, "adapter")))
    if what == "merged" or (what == "both" and has_merged):
        target = repo_id if what == "merged" else repo_id + MERGED_SUFFIX
        if problem := repo_id_problem(target):
            raise HubError(f"repo id of the merged model: {problem}; choose a shorter --repo-id")
        uploads.append(_merged_upload(folder, metrics, target, repo_id if what == "both" else None, commit_message))
    return uploads


def _merged_upload(folder: Path, metrics: dict, target: str, adapter_repo: str | None, commit_message: str | None) -> _Upload:
    merged = folder / MERGED
    if not merged.is_dir():
        raise HubError(f"--what merged: '{folder}' has no merged model (no '{MERGED}/' folder; the run had strategy.merge=false)")
    if MERGED not in metrics["reload_check"].get("folders", {}):
        raise HubError(f"refusing to push '{merged}': metrics.json records no reload check for it; train again to check it")
    _require(merged, ("config.json", "README.md"), _WEIGHTS)
    files = _files(merged) | {name: folder / name for name in _RUN_FILES if (folder / name).is_file()}
    own = _card_id(merged)
    ids = {own: target} | ({own.removesuffix(MERGED_SUFFIX): adapter_repo} if adapter_repo else {})
    return _Upload("merged model", target, files, _readme(merged, ids), commit_message or _message(metrics, "merged"))


def _finished_run(folder: Path) -> dict:
    """metrics.json of a finished run whose reload check passed."""
    if not folder.is_dir():
        raise HubError(f"'{folder}' is not a folder; give the output.dir of a finished training run")
    path = folder / "metrics.json"
    if not path.is_file():
        raise HubError(f"refusing to push '{folder}': it has no metrics.json, so it is not the output of a finished "
                       "nlp_transfer run; train to completion first (nlp-transfer train RECIPE)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HubError(f"refusing to push '{folder}': metrics.json is not valid JSON ({exc}); train again") from None
    check = metrics.get("reload_check") if isinstance(metrics, dict) else None
    if not isinstance(check, dict) or check.get("passed") is not True:
        state = "is missing" if not isinstance(check, dict) else f"did not pass (passed={check.get('passed')!r})"
        raise HubError(f"refusing to push '{folder}': its reload check {state} in metrics.json, so the saved weights are not "
                       "known to reproduce the trained model; train again")
    return metrics


def _require(folder: Path, names: tuple[str, ...], one_of: tuple[str, ...]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if one_of and not any((folder / n).is_file() for n in one_of):
        missing.append(" or ".join(one_of))
    if missing:
        raise HubError(f"refusing to push '{folder}': it is incomplete, missing {', '.join(missing)}; train again")


def _files(folder: Path) -> dict[str, Path]:
    """Every file to upload by its path in the repo; hidden files and folders stay local."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def _card_id(folder: Path) -> str:
    return ModelCard((folder / "README.md").read_text(encoding="utf-8")).data.model_name or folder.name


def _readme(folder: Path, new_ids: dict[str, str]) -> str:
    return retarget_card((folder / "README.md").read_text(encoding="utf-8"), new_ids)


def _message(metrics: dict, kind: str) -> str:
    """E.g. ``nlp_transfer: full fine-tune of sentence-transformers/all-MiniLM-L6-v2, validation accuracy 0.9083``."""
    strategy = metrics.get("strategy", "")
    described = STRATEGIES[strategy].Options.description if strategy in STRATEGIES else f"{strategy} model"
    what = "merged LoRA fine-tune" if kind == "merged" else described
    base = str(metrics.get("model", "a local model"))
    base = Path(base).name if Path(base).is_absolute() else base  # never a local path in a public commit
    scores = [(n, v) for n, v in (metrics.get("validation") or {}).items() if n != "loss"]
    score = f", validation {scores[0][0]} {scores[0][1]:.4f}" if scores else ""
    return f"nlp_transfer: {what} of {base}{score}"


def _push_one(api: HfApi, upload: _Upload, private: bool, revision: str | None) -> str:
    """Create the repo (and branch) if needed, then upload the files as one commit."""
    api.create_repo(upload.repo_id, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(upload.repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nlp-transfer-push-") as tmp:
        stage = Path(tmp)
        for rel, source in upload.files.items():
            if rel == "recipe.yaml":  # no absolute path of this machine goes out
                (stage / rel).write_text(publishable_recipe(source.read_text(encoding="utf-8")), encoding="utf-8")
            elif rel != "README.md":
                _link(source, stage / rel)
        (stage / "README.md").write_text(upload.readme, encoding="utf-8")
        info = api.upload_folder(repo_id=upload.repo_id, folder_path=stage, revision=revision,
                                 commit_message=upload.message)
    return str(info.commit_url)


def _link(source: Path, target: Path) -> None:
    """Stage a file without copying its bytes where the filesystem allows it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copy2(source, target)


def _explain(exc: BaseException, repo_id: str, revision: str | None, endpoint: str) -> str:
    """One sentence on what went wrong and what to do, from the exception (or one it wraps)."""
    chain = list(_chain(exc))
    http = next((e for e in chain if isinstance(e, HfHubHTTPError) and e.response is not None), None)
    if http is not None:
        status, server = http.response.status_code, (http.server_message or "").strip()
        detail = f" The Hub said: {server}" if server else ""
        namespace = repo_id.split("/")[0]
        if status == 401:
            return (f"the Hub at {endpoint} rejected the token (401 Unauthorized) for {repo_id!r}: it is invalid, expired "
                    "or revoked. Create a token with write access at https://huggingface.co/settings/tokens, then set "
                    "HF_TOKEN or run `hf auth login`")
        if status == 403:
            return (f"the token may not write to {repo_id!r} (403 Forbidden): use a token with write access to the "
                    f"namespace {namespace!r} (a fine-grained token needs 'write' there), or push to a namespace you own.{detail}")
        if status == 404:
            branch = f" or branch {revision!r}" if revision else ""
            return (f"the repo {repo_id!r}{branch} was not found (404 Not Found) at {endpoint}: check the repo id and "
                    f"--revision; a private repo the token cannot see also answers 404.{detail}")
        if status == 409:
            return (f"the Hub refused the push to {repo_id!r} with a conflict (409 Conflict): the repo or branch changed "
                    f"during the push, or another operation on it is in progress; push again.{detail}")
        if status >= 500:
            return (f"the Hub at {endpoint} failed with a server error ({status}) while pushing to {repo_id!r}; this is "
                    "usually temporary: push again later")
        return f"the Hub refused the push to {repo_id!r} ({status}).{detail}"
    if any(_is_connection_error(e) for e in chain):
        cause = next(e for e in chain if _is_connection_error(e))
        return (f"cannot reach the Hub at {endpoint} ({type(cause).__name__}: {cause}); check the network connection, "
                "any proxy settings and HF_ENDPOINT")
    return f"pushing to {repo_id!r} failed: {type(exc).__name__}: {exc}"


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # huggingface_hub's HTTP client (httpx2, httpx before it): its transport errors mean "could not talk to the server".
    return any(cls.__name__ == "TransportError" and cls.__module__.split(".")[0] in ("httpx", "httpx2")
               for cls in type(exc).__mro__)


def _scrub(text: str, token: str | None) -> str:
    """The message without the token, whatever quoted it."""
    return text.replace(token, "***") if token else text
