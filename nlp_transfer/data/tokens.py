"""Token classification data: the CoNLL reader, tag ids per word, and word-piece alignment.

A token-classification row holds a list of words (``task.tokens``) and one tag per word
(``task.tags``: names, or ids of a ``Sequence(ClassLabel)``). Tokenizing splits words into
word pieces; the word's tag goes on its first piece and the other pieces get ``IGNORE_INDEX``
(or, with ``task.label_all_subtokens``, the word's tag too). Words cut by ``model.max_length``
are counted, logged and reported in ``metrics.json``, never dropped silently.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Sequence

from ..errors import DataError
from ..recipe.schema import DataConfig, TaskConfig
from ..tasks.spec import IGNORE_INDEX, TaskSpec
from .columns import column_values
from .sampling import longest_first

logger = logging.getLogger(__name__)

NO_WORD = -1  # word id of a special token (``word_ids_column``)

CONLL_TOKENS, CONLL_TAGS = "tokens", "tags"  # the columns read_conll writes (renamed to task.tokens / task.tags)
_LINE = "line"  # CoNLL rows remember the file line of their first word, for error messages
_DOCSTART = "-DOCSTART-"


def read_conll(path: str | Path, tag_column: int = -1) -> Dataset:
    """Sentences of a CoNLL file: one ``word ... tag`` line per word, a blank line between sentences.

    ``-DOCSTART-`` lines (document breaks) are skipped and end the current sentence.

    Args:
        path: The text file.
        tag_column: Which whitespace-separated column holds the tag (default: the last one);
            the word is always the first.

    Returns:
        A dataset with ``tokens`` and ``tags`` (lists of strings) and ``line`` (the file line of
        the sentence's first word).

    Raises:
        DataError: A line has too few columns for ``tag_column`` (file and line number in the message).
    """
    path = Path(path)
    rows: dict[str, list] = {CONLL_TOKENS: [], CONLL_TAGS: [], _LINE: []}
    words: list[str] = []
    tags: list[str] = []
    start = 0
    need = tag_column + 1 if tag_column >= 0 else -tag_column + 1  # the word plus the tag column

    def end_sentence():
        if words:
            rows[CONLL_TOKENS].append(list(words))
            rows[CONLL_TAGS].append(list(tags))
            rows[_LINE].append(start)
            words.clear()
            tags.clear()

    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0] == _DOCSTART:
                end_sentence()
                continue
            if len(fields) < need:
                raise DataError(f"{path}, line {number}: expected a word and a tag in column {tag_column} "
                                f"(at least {need} whitespace-separated columns); got {line.rstrip()!r}. "
                                "Fix the line, or set data.tag_column to the column that holds the tag")
            if not words:
                start = number
            words.append(fields[0])
            tags.append(fields[tag_column])
    end_sentence()
    return Dataset.from_dict(rows)


def encode_tags(splits: DatasetDict, task: TaskConfig, data: DataConfig,
                names: list[str] | None = None) -> tuple[DatasetDict, TaskSpec]:
    """Add ``labels`` (one tag id per word) to every split; tag names come from train.

    Names come from ``names`` (a saved model's), else the tags' ``ClassLabel``, else ``task.labels``,
    else the tags seen in train (``O`` first, then sorted).

    Raises:
        DataError: Missing columns, a row whose word and tag counts differ, or a tag that train never had
            (with the file line for CoNLL files).
    """
    splits = DatasetDict({s: _with_task_columns(ds, task) for s, ds in splits.items()})
    for split, ds in splits.items():
        missing = [c for c in (task.tokens, task.tags) if c not in ds.column_names]
        if missing:
            raise DataError(f"data split '{split}' ({_where(data, split)}): missing column(s) {missing}; columns present: "
                            f"{ds.column_names}. Set task.tokens / task.tags to the word-list and tag-list columns")
    names = names or _tag_names(splits["train"], task)
    index = {name: i for i, name in enumerate(names)}
    encoded = DatasetDict()
    for split, ds in splits.items():
        class_ids = isinstance(_inner(ds.features[task.tags]), ClassLabel)
        to_id = (lambda v: v if 0 <= v < len(names) else None) if class_ids else index.get
        for row, (words, tags) in enumerate(zip(column_values(ds, task.tokens), column_values(ds, task.tags))):
            if len(words) != len(tags):
                raise DataError(f"data split '{split}' ({_where(data, split)}), row {row}: {len(words)} words but "
                                f"{len(tags)} tags; every word needs exactly one tag")
            for i, tag in enumerate(tags):
                if to_id(tag) is None:
                    raise DataError(f"data split '{split}' ({_where(data, split, ds, row, i)}): tag {tag!r} never occurs in "
                                    f"train; train tags: {names}. Fix the data or list every tag in task.labels")
        encoded[split] = ds.map(lambda b: {"labels": [[to_id(t) for t in tags] for tags in b[task.tags]]},
                                batched=True, desc=f"tags {split}")
    return encoded, TaskSpec(task.type, dict(enumerate(names)))


def _with_task_columns(ds: Dataset, task: TaskConfig) -> Dataset:
    """CoNLL files come with fixed column names; give them the recipe's names."""
    if _LINE not in ds.column_names:
        return ds
    rename = {old: new for old, new in ((CONLL_TOKENS, task.tokens), (CONLL_TAGS, task.tags)) if old != new}
    return ds.rename_columns(rename) if rename else ds


def _inner(feature):
    return feature.feature if isinstance(feature, Sequence) else getattr(feature, "feature", feature)


def _tag_names(train: Dataset, task: TaskConfig) -> list[str]:
    inner = _inner(train.features[task.tags])
    if isinstance(inner, ClassLabel):  # the ids in the data already are these names' positions
        return list(inner.names)
    if task.labels:
        return list(task.labels)
    seen = {str(t) for tags in column_values(train, task.tags) for t in tags}
    return sorted(seen, key=lambda t: (t != "O", t))


def _where(data: DataConfig, split: str, ds: Dataset | None = None, row: int = 0, word: int = 0) -> str:
    where = data.files.get(split) or f"{data.source} [{split}]"
    if ds is not None and _LINE in ds.column_names:
        return f"{where}, line {ds[row][_LINE] + word}"
    return f"{where}, row {row}, word {word}"


def tokenize_and_align(splits: DatasetDict, tokenizer, task: TaskConfig, max_length: int,
                       carry: tuple[str, ...] = ()) -> tuple[DatasetDict, dict]:
    """Word pieces per split with tags aligned to them, plus ``length``; evaluation splits sorted long to short.

    ``carry``: raw columns kept beside the token ids (e.g. the word lists, for a teacher with another tokenizer).

    Returns:
        The tokenized splits and a truncation report per split: sentences cut by ``max_length``
        and how many of their words were lost.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"task.type token-classification needs a fast tokenizer (word ids per piece); "
                        f"{type(tokenizer).__name__} is not one. Use a model whose tokenizer has a fast version")

    def tokenize(batch):
        encoded = tokenize_words(tokenizer, batch[task.tokens], max_length)
        labels, cut = [], []
        for i, tags in enumerate(batch["labels"]):
            word_ids = encoded.word_ids(i)
            labels.append(align_labels(word_ids, tags, task.label_all_subtokens))
            kept = {w for w in word_ids if w is not None}
            cut.append(len(tags) - len(kept))
        encoded["labels"], encoded["words_cut"] = labels, cut
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    tokenized, report = DatasetDict(), {}
    for split, ds in splits.items():
        out = ds.map(tokenize, batched=True, remove_columns=[c for c in ds.column_names if c not in carry],
                     desc=f"tokenize {split}")
        cut = column_values(out, "words_cut")
        report[split] = {"sentences": len(cut), "sentences_truncated": sum(1 for c in cut if c),
                         "words_cut": int(sum(cut)), "max_length": max_length}
        if report[split]["words_cut"]:
            logger.warning("Split '%s': %d of %d sentences are longer than model.max_length=%d word pieces; %d words "
                           "were cut (no loss or score for them). Raise model.max_length to keep them", split,
                           report[split]["sentences_truncated"], len(cut), max_length, report[split]["words_cut"])
        out = out.remove_columns("words_cut")
        tokenized[split] = out if split == "train" else longest_first(out)
    return tokenized, report


def tokenize_words(tokenizer, sentences: list[list], max_length: int):
    """Word pieces of sentences given as word lists, truncated at ``max_length``; ``.word_ids(i)`` maps
    the pieces of sentence ``i`` to its words."""
    return tokenizer([[str(w) for w in words] for words in sentences], is_split_into_words=True, truncation=True,
                     max_length=max_length)


def align_labels(word_ids: list[int | None], tags: list[int], label_all_subtokens: bool = False) -> list[int]:
    """One label per word piece: the word's tag on its first piece, ``IGNORE_INDEX`` elsewhere.

    Special tokens (``word_id`` None) are always ignored; with ``label_all_subtokens`` every
    piece of a word gets the word's tag.
    """
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE_INDEX)
        elif word != previous or label_all_subtokens:
            labels.append(tags[word])
        else:
            labels.append(IGNORE_INDEX)
        previous = word
    return labels


def word_ids_column(encoded) -> list[list[int]]:
    """Per sentence of ``encoded`` (``tokenize_words``), the word of each piece; ``NO_WORD`` for special tokens."""
    return [[NO_WORD if w is None else w for w in encoded.word_ids(i)] for i in range(len(encoded["input_ids"]))]


def align_word_targets(targets: list, target_word_ids: list[list[int]], sentences: list[list], input_ids: list[list[int]],
                       tokenizer) -> list:
    """Per-piece targets of one tokenization (a teacher's) moved to the pieces of another (the student's), through the words.

    Args:
        targets: Per sentence, one row per piece of the first tokenization, (pieces, labels).
        target_word_ids: Per sentence, the word of each of those pieces (``word_ids_column``).
        sentences: The word lists.
        input_ids: Per sentence, the other tokenization's ids, made by ``tokenizer`` from the same words.
        tokenizer: The tokenizer of ``input_ids``.

    Returns:
        Per sentence, (pieces of ``input_ids``, labels): the target at the first piece of each word on every
        piece of that word; NaN on special tokens and on words the first tokenization did not reach (truncated).
    """
    import numpy as np

    aligned = []
    for row, row_words, words, ids in zip(targets, target_word_ids, sentences, input_ids):
        row = np.asarray(row, dtype=np.float32)
        per_word = np.full((len(words), row.shape[-1]), np.nan, dtype=np.float32)
        for position in reversed(range(len(row_words))):  # reversed: the first piece of a word wins
            if row_words[position] != NO_WORD:
                per_word[row_words[position]] = row[position]
        piece_words = _piece_words(tokenizer, words, ids)
        out = np.full((len(ids), row.shape[-1]), np.nan, dtype=np.float32)
        known = [i for i, w in enumerate(piece_words) if w is not None]
        out[known] = per_word[[piece_words[i] for i in known]]
        aligned.append(out)
    return aligned


def _piece_words(tokenizer, words: list, input_ids: list[int]) -> list[int | None]:
    """The word of each piece of ``input_ids``, by tokenizing ``words`` again exactly as they were."""
    encoded = tokenize_words(tokenizer, [words], len(input_ids))
    if encoded["input_ids"][0] != list(input_ids):
        raise DataError(f"tokenizing the words {list(words)[:8]} again gave other token ids than the rows hold; "
                        "aligning per word needs a deterministic tokenizer")
    return encoded.word_ids(0)
