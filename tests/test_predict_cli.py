"""``nlp-transfer predict`` and ``Predictor`` over many rows: a bar on a terminal only, a closing summary line, and
empty input refused as training refuses it (every such row named, exit 2, nothing written)."""

import io
import json
import re
import sys

import pytest
from conftest import VOCAB

import nlp_transfer
from nlp_transfer import DataError, Predictor
from nlp_transfer.cli import main
from nlp_transfer.inference.predictor import progress_bar

TEXTS = ["the food was good", "it was awful and broken", "a lovely happy movie"]
SUMMARY = re.compile(r"^Predicted 3 rows in \d+\.\d s \([\d,]+ rows/s\)$")


class _Terminal(io.StringIO):
    """Standard error as a terminal would be: ``isatty()`` is true."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random-init BERT classifier (negative/positive) saved as a plain model folder (no training needed:
    these tests look at how rows go in and what is said, not at the labels)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("predict") / "model"
    BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


# ---------------------------------------------------------------------- progress and the summary line
def test_predict_ends_with_a_summary_line_on_stderr_and_no_bar_off_a_terminal(model_dir, capsys):
    assert main(["predict", model_dir, *TEXTS]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["text"] for line in out.splitlines()] == TEXTS
    assert SUMMARY.match(err.splitlines()[-1]), err
    assert "predict:" not in err  # captured stderr is no terminal: no bar
    assert main(["-q", "predict", model_dir, *TEXTS]) == 0
    err = capsys.readouterr().err
    assert "predict:" not in err and "Predicted" not in err  # quiet: neither bar nor summary


def test_predict_on_a_terminal_shows_a_bar_of_the_rows(model_dir, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["predict", model_dir, *TEXTS, "--batch-size", "2"]) == 0
    shown = terminal.getvalue()
    assert "predict: 100%" in shown and "3/3" in shown, shown
    assert SUMMARY.match(shown.splitlines()[-1]), shown
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["-q", "predict", model_dir, *TEXTS]) == 0
    assert "predict:" not in quiet.getvalue() and "Predicted" not in quiet.getvalue()


def test_predictor_prints_nothing_unless_asked(model_dir, monkeypatch):
    classify = Predictor(model_dir)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    quiet = classify(TEXTS, batch_size=2)
    assert terminal.getvalue() == ""
    assert classify(TEXTS, batch_size=2, progress=True) == quiet
    assert "3/3" in terminal.getvalue()


def test_the_bar_is_on_only_when_asked_and_stderr_is_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert not progress_bar(3, True).disable
    assert progress_bar(3, False).disable
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a log file
    assert progress_bar(3, True).disable


# ---------------------------------------------------------------------- empty input
def test_empty_texts_on_the_command_line_are_refused_by_position(model_dir, capsys):
    assert main(["predict", model_dir, "good", "", "   ", "\u200b\u2060"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "3 empty or missing inputs; nothing was predicted" in err
    assert "text argument 4: empty text ('\\u200b\\u2060': only invisible characters)" in err
    assert "text argument 2: empty text ('')" in err and "text argument 3: empty text ('   ')" in err
    assert "text argument 1" not in err and "Traceback" not in err


@pytest.mark.parametrize("suffix, content, where", [
    ("csv", 'id,review\n1,good\n2,""\n3,   \n', ["column 'review', row 2 (line 3): empty text ('')",
                                                   "column 'review', row 3 (line 4): empty text ('   ')"]),
    ("jsonl", '{"review": "good"}\n\n{"review": null}\n{"id": 3}\n', ["column 'review', row 2 (line 3): empty (no value)",
                                                                       "column 'review', row 3 (line 4): empty (no value)"]),
    ("txt", "good\n\n  \nbad\n\n", ["line 2: empty text ('')", "line 3: empty text ('  ')"]),
])
def test_empty_rows_of_a_file_are_refused_by_row_and_nothing_is_written(model_dir, tmp_path, capsys, suffix, content,
                                                                        where):
    file = tmp_path / f"rows.{suffix}"
    file.write_text(content, encoding="utf-8")
    out = tmp_path / "predictions.jsonl"
    args = ["predict", model_dir, "--file", str(file), "--out", str(out)] + (["--column", "review"] if suffix != "txt" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 empty or missing inputs; nothing was predicted (training refuses such rows too)" in err
    for problem in where:
        assert f"{file}, {problem}" in err, err
    assert not out.exists()


def test_an_empty_text_of_a_sentence_pair_names_its_column(model_dir, tmp_path, capsys):
    file = tmp_path / "pairs.csv"
    file.write_text("first,second\ngood,bad\nfine,\n", encoding="utf-8")
    assert main(["predict", model_dir, "--file", str(file), "--column", "first", "--column", "second"]) == 2
    err = capsys.readouterr().err
    assert "1 empty or missing input; nothing was predicted" in err
    assert f"{file}, column 'second', row 2 (line 3): empty text ('')" in err
    with pytest.raises(DataError, match=r"input 2, text 2: empty text \(''\)"):
        Predictor(model_dir)([("good", "bad"), ("fine", "")])


def test_the_python_api_refuses_empty_text_the_same_way(model_dir):
    classify = Predictor(model_dir)
    with pytest.raises(DataError, match=r"(?s)2 empty or missing inputs; nothing was predicted.*input 2: empty text "
                                        r"\(' \\t'\).*input 3: empty \(no value\)"):
        classify(["good", " \t", None])
    with pytest.raises(DataError, match=r"input 1: empty text \(''\)"):
        classify.logits([""])
    with pytest.raises(DataError, match=r"input 1: empty text"):
        nlp_transfer.predict(model_dir, [""])
