"""Recipes: YAML/dict loading, dotted overrides, and validation that reports every problem at once."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from conftest import missing_repo_shared_file

from nlp_transfer import Recipe, RecipeError, load_recipe
from nlp_transfer.recipe.schema import TrainConfig
from nlp_transfer.recipe.load import load_any_recipe
from nlp_transfer.strategies.registry import STRATEGIES

REPO = Path(__file__).resolve().parents[1]
BUNDLED_RECIPES = sorted(REPO.glob("recipes/**/*.yaml"))
EXISTING_CSV = str(REPO / "nlp_transfer" / "quickstart_data" / "train.csv")  # data files must exist


def _minimal() -> dict:
    return {
        "model": {"name": "some/model"},
        "data": {"files": {"train": EXISTING_CSV}},
        "output": {"dir": "/abs/out"},
    }


def _write_yaml(path: Path, recipe: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_yaml_and_dict_give_the_same_recipe(toy_recipe, tmp_path):
    from_file = load_recipe(_write_yaml(tmp_path / "r.yaml", toy_recipe))
    from_dict = load_recipe(toy_recipe)
    assert isinstance(from_file, Recipe)
    assert from_file.to_dict() == from_dict.to_dict()
    assert from_file.train.lr == 3e-3 and from_file.train.epochs == 10.0 and isinstance(from_file.train.epochs, float)
    assert from_file.model.max_length == 32
    assert from_file.strategy_name == "full"
    assert from_file.source == str(tmp_path / "r.yaml")
    assert from_dict.source == "<dict>"


def test_dict_recipe_is_not_mutated(toy_recipe):
    before = yaml.safe_dump(toy_recipe)
    load_recipe(toy_recipe, ["train.lr=1e-4", "data.limit.train=5"])
    assert yaml.safe_dump(toy_recipe) == before


def test_dotted_overrides():
    recipe = load_recipe(_minimal(), ["train.lr=3e-5", "task.text=[a, b]", "data.limit.train=10",
                                      "strategy.layer_decay=0.9", "train.group_by_length=false"])
    assert recipe.train.lr == pytest.approx(3e-5) and isinstance(recipe.train.lr, float)
    assert recipe.task.text == ["a", "b"] and recipe.task.text_columns == ["a", "b"]
    assert recipe.data.limit == {"train": 10}  # a new nested key under a section that had none
    assert recipe.strategy.layer_decay == 0.9
    assert recipe.train.group_by_length is False


def test_overrides_as_a_dict_and_replacing_a_value():
    raw = _minimal()
    raw["train"] = {"lr": 1e-3, "epochs": 2}
    recipe = load_recipe(raw, {"train.lr": 2e-5, "model.max_length": 64})
    assert recipe.train.lr == 2e-5 and recipe.train.epochs == 2.0 and recipe.model.max_length == 64


def test_override_creates_a_whole_new_section():
    raw = _minimal()
    assert "strategy" not in raw
    recipe = load_recipe(raw, ["strategy.name=frozen", "strategy.cache_features=false"])
    assert recipe.strategy_name == "frozen" and recipe.strategy.cache_features is False


def test_unknown_key_lists_the_valid_keys():
    valid = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
    with pytest.raises(RecipeError, match=re.escape(f"train.learning_rate: unknown key; valid keys for 'train': {valid}")) as info:
        load_recipe(_minimal(), ["train.learning_rate=1e-4"])
    assert len(info.value.problems) == 1
    assert "lr, weight_decay" in valid


def test_a_moved_key_names_its_new_place():
    with pytest.raises(RecipeError, match=re.escape("strategy.pooling: unknown key (it is now model.pooling: move it there); "
                                                    "valid keys for 'strategy': name, cache_features")) as info:
        load_recipe(_minimal(), ["strategy.name=frozen", "strategy.pooling=mean"])
    assert len(info.value.problems) == 1


def test_unknown_strategy_key_lists_that_strategys_keys():
    with pytest.raises(RecipeError, match=r"strategy\.r: unknown key; valid keys for 'strategy': name, layer_decay"):
        load_recipe(_minimal(), ["strategy.r=8"])


def test_unknown_section():
    raw = {**_minimal(), "trainer": {"lr": 1}}
    with pytest.raises(RecipeError, match=r"trainer: unknown section; valid sections: model, task, data, strategy, train, output"):
        load_recipe(raw)


def test_unknown_strategy_lists_registered_strategies():
    registered = ", ".join(sorted(STRATEGIES))
    with pytest.raises(RecipeError, match=re.escape(f"strategy.name: unknown strategy 'magic'; registered strategies: {registered}")):
        load_recipe(_minimal(), ["strategy.name=magic"])


@pytest.mark.parametrize("override, expected", [
    ("train.epochs=abc", r"train\.epochs: got 'abc'; expected a number"),
    ("train.mixed_precision=fp8", r"train\.mixed_precision: got 'fp8'; expected one of: auto, no, fp16, bf16"),
    ("train.batch_size=2.5", r"train\.batch_size: got 2\.5; expected an integer"),
    ("train.group_by_length=maybe", r"train\.group_by_length: got 'maybe'; expected true/false"),
    ("task.type=translation", r"task\.type: got 'translation'; expected one of: text-classification"),
    ("data.limit=5", r"data\.limit: got 5; expected a mapping"),
])
def test_wrong_types(override, expected):
    with pytest.raises(RecipeError, match=expected):
        load_recipe(_minimal(), [override])


def test_value_checks_beyond_types():
    with pytest.raises(RecipeError) as info:
        load_recipe(_minimal(), ["train.epochs=0", "model.max_length=4", f"data.files.dev={EXISTING_CSV}",
                                 "strategy.layer_decay=1.5"])
    text = "\n".join(info.value.problems)
    for key in ("train.epochs", "model.max_length", "data.files.dev", "strategy.layer_decay"):
        assert key in text, text
    assert len(info.value.problems) == 4


def test_all_problems_reported_at_once_with_key_paths_and_file(tmp_path):
    raw = _minimal()
    raw["train"] = {"epochs": "abc", "mixed_precision": "fp8"}
    raw["model"]["colour"] = "blue"
    path = _write_yaml(tmp_path / "three_problems.yaml", raw)
    with pytest.raises(RecipeError, match=r"three_problems\.yaml: 3 problems in the recipe") as info:
        load_recipe(path)
    err = info.value
    assert err.source == str(path)
    assert len(err.problems) == 3, err.problems
    keys = sorted(p.split(":")[0] for p in err.problems)
    assert keys == ["model.colour", "train.epochs", "train.mixed_precision"]
    for problem in err.problems:
        assert f"  - {problem}" in str(err)  # every problem is in the one message, under the file's header


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,label\na,b\n", encoding="utf-8")
    return path


def test_relative_data_files_resolve_against_the_recipe_folder(tmp_path, monkeypatch):
    train = _touch(tmp_path / "recipes" / "data" / "train.csv")
    validation = _touch(tmp_path / "elsewhere" / "val.csv")
    test = _touch(tmp_path / "abs" / "test.csv")
    raw = _minimal()
    raw["data"]["files"] = {"train": "data/train.csv", "validation": "../elsewhere/val.csv", "test": str(test)}
    path = _write_yaml(tmp_path / "recipes" / "r.yaml", raw)
    monkeypatch.chdir(tmp_path / "elsewhere")  # somewhere that is not the recipe's folder
    recipe = load_recipe(path)
    assert recipe.data.files == {"train": str(train.resolve()), "validation": str(validation.resolve()), "test": str(test)}


def test_relative_data_files_in_a_dict_resolve_against_the_working_directory(tmp_path, monkeypatch):
    train = _touch(tmp_path / "train.csv")
    raw = _minimal()
    raw["data"]["files"] = {"train": "train.csv"}
    monkeypatch.chdir(tmp_path)
    assert load_recipe(raw).data.files["train"] == str(train.resolve())


def test_data_file_overrides_resolve_against_the_working_directory(tmp_path, monkeypatch):
    _touch(tmp_path / "recipes" / "train.csv")
    cwd_file = _touch(tmp_path / "work" / "mine.csv")
    raw = _minimal()
    raw["data"]["files"] = {"train": "train.csv"}
    path = _write_yaml(tmp_path / "recipes" / "r.yaml", raw)
    monkeypatch.chdir(tmp_path / "work")
    assert load_recipe(path, ["data.files.train=mine.csv"]).data.files["train"] == str(cwd_file.resolve())


def test_an_override_changes_only_its_key_when_yaml_aliases_share_a_value(tmp_path, monkeypatch):
    """Two tasks reading one aliased data section (``*common``) are two keys: overriding one leaves the other."""
    train, mine = _touch(tmp_path / "train.csv"), _touch(tmp_path / "mine.csv")
    path = tmp_path / "multi.yaml"
    path.write_text("model: {name: some/model}\noutput: {dir: /abs/out}\ntasks:\n"
                    "  a: {type: text-classification, data: &common {files: {train: train.csv}}}\n"
                    "  b: {type: text-classification, data: *common}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    recipe = load_any_recipe(path, ["tasks.b.data.files.train=mine.csv"])
    assert [e.recipe.data.files["train"] for e in recipe.tasks] == [str(train.resolve()), str(mine.resolve())]


def test_missing_data_files_are_reported_with_the_other_problems(tmp_path):
    raw = _minimal()
    raw["data"]["files"] = {"train": "no/such/train.csv"}
    path = _write_yaml(tmp_path / "r.yaml", raw)
    with pytest.raises(RecipeError, match=r"2 problems") as info:
        load_recipe(path, ["train.epochs=abc"])
    missing = str(tmp_path / "no" / "such" / "train.csv")
    assert any(p.startswith(f"data.files.train: file not found: '{missing}'") for p in info.value.problems), info.value.problems


def test_missing_model_name_and_output_dir():
    raw = _minimal()
    del raw["model"]
    del raw["output"]
    with pytest.raises(RecipeError, match=r"2 problems") as info:
        load_recipe(raw)
    problems = info.value.problems
    assert any(p.startswith("model.name: missing") for p in problems), problems
    assert any(p.startswith("output.dir: missing") for p in problems), problems


def test_missing_data():
    raw = _minimal()
    del raw["data"]
    with pytest.raises(RecipeError, match=r"data: no data given; set data\.source .* or data\.files\.train"):
        load_recipe(raw)


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train lr=3"])
def test_bad_override_syntax(bad):
    with pytest.raises(RecipeError, match=r"expected key=value with a dotted key"):
        load_recipe(_minimal(), [bad])


def test_override_through_a_value_is_an_error():
    with pytest.raises(RecipeError, match=r"override 'train\.lr\.x': 'train\.lr' is a value, not a section"):
        load_recipe(_minimal(), ["train.lr=1e-3", "train.lr.x=1"])


def test_missing_recipe_file_and_invalid_yaml(tmp_path):
    with pytest.raises(RecipeError, match=r"recipe file not found: '.*nope\.yaml'"):
        load_recipe(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"broken\.yaml: 1 problem in the recipe:\n  - not valid YAML"):
        load_recipe(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"the top level must be a mapping of sections"):
        load_recipe(listing)


def test_bundled_recipes_exist():
    assert BUNDLED_RECIPES, f"no recipes found under {REPO / 'recipes'}"


@pytest.mark.parametrize("path", BUNDLED_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_bundled_recipe_parses(path):
    try:
        recipe = load_any_recipe(path)
    except RecipeError as exc:  # tests/recipes/ checks such a recipe's other keys; here it needs the files
        if not all(missing_repo_shared_file(problem) for problem in exc.problems):
            raise
        pytest.skip("a bundled recipe that reads ../shared/data, absent beside this checkout")
    assert recipe.model.name and recipe.output.dir
    assert recipe.strategy_name in STRATEGIES
    for one in ([entry.recipe for entry in recipe.tasks] if hasattr(recipe, "tasks") else [recipe]):
        assert all(Path(file).is_absolute() for file in one.data.files.values())


def test_every_package_of_the_source_tree_is_installed():
    """setup.py's package list (what the wheel holds) covers every package folder, and maps the two data packages that
    live at the repository root (card templates, bundled recipes) to their folders."""
    import setuptools

    captured = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
        patch.chdir(REPO)
        exec(compile((REPO / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
    listed = set(captured["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "nlp_transfer").rglob("__init__.py")}
    assert found - listed == set(), "setup.py's packages miss these: an installed wheel lacks them"
    assert captured["package_dir"] == {"nlp_transfer.model_cards": "model_cards", "nlp_transfer.bundled_recipes": "recipes"}
    assert {"nlp_transfer.model_cards", "nlp_transfer.bundled_recipes"} <= listed
