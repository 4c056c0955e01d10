"""``token-classification``: one tag per word (NER), scored at the entity level as CoNLL counts it.

Rows hold a word list (``task.tokens``) and one tag per word (``task.tags``); data reading and
word-piece alignment are in ``token_data.py``. Logits and labels are per position,
(batch, positions, tags); positions without a target carry ``IGNORE_INDEX``.
"""

from __future__ import annotations

from .._lazy import lazy
from ..data.checks import WORDS
from ..data.columns import column_values
from ..evaluation.metrics import MetricError, load_metric_module
from .base import TaskType
from .spec import IGNORE_INDEX, WORD_IDS

np = lazy("numpy")
F = lazy("torch.nn.functional")

# entity-level micro scores and token accuracy, all from seqeval
TOKEN_METRICS = {"f1": "overall_f1", "precision": "overall_precision", "recall": "overall_recall",
                 "accuracy": "overall_accuracy"}
_PER_TYPE = ("precision", "recall", "f1")
EXAMPLE_TOKENS = "Angela Merkel met Emmanuel Macron in Paris."


class TokenClassification(TaskType):
    """Tag every word; a word's tag goes on its first word piece (``task.label_all_subtokens``: on every piece)."""

    name = "token-classification"
    display_name = "Token Classification"
    problem_type = None  # transformers' token heads have one loss; the config keeps no problem type
    pipeline_tag = "token-classification"
    per_token = True
    pools = False
    takes_unlabeled = False
    default_metrics = ("f1", "precision", "recall", "accuracy")
    peft_task_type = "TOKEN_CLS"
    peft_auto_class = "AutoPeftModelForTokenClassification"
    reads = frozenset({"data.format", "data.tag_column", "task.label_all_subtokens"})
    input_cell = WORDS

    def input_columns(self, task) -> list[str]:
        return [task.tokens]

    def allowed_metrics(self) -> tuple[str, ...]:
        return tuple(TOKEN_METRICS)

    def metric_problems(self, names) -> list[str]:
        allowed = self.allowed_metrics()
        return [f"metric '{name}' does not apply to task.type '{self.name}'; use one of: {', '.join(allowed)} "
                "(entity-level micro scores, token accuracy; per entity type added automatically)"
                for name in names if name not in allowed]

    def validate(self, recipe) -> list[str]:
        problems = super().validate(recipe)
        if recipe.data.tag_column == 0:
            problems.append("data.tag_column: got 0, which is the word column; give the tag's column, e.g. -1 (the last) or 3")
        return problems

    # -------------------------------------------------------------------- data
    def encode_labels(self, splits, task, data, names=None):
        from ..data.tokens import encode_tags

        return encode_tags(splits, task, data, names)

    def stratify_by(self, ds):
        return None

    def preprocess(self, splits, processor, recipe, *, augment: bool = True, carry: tuple[str, ...] = ()):
        from ..data.tokens import tokenize_and_align

        return tokenize_and_align(splits, processor, recipe.task, recipe.model.max_length, carry)

    def tokenize_rows(self, tokenizer, batch, columns, max_length) -> dict:
        """Word pieces of the word lists, ``length`` and ``WORD_IDS`` (the word of each piece; -1: a special token)."""
        from ..data.tokens import tokenize_words, word_ids_column

        encoded = tokenize_words(tokenizer, batch[columns[0]], max_length)
        encoded[WORD_IDS] = word_ids_column(encoded)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return dict(encoded)

    def align_targets(self, targets, other_rows, rows, tokenizer, columns):
        """Per-piece targets aligned per word: the other tokenization's target at a word's first piece goes on
        every piece of that word here (the loss reads the tagged ones, as the labels do); NaN where it has none."""
        from ..data.tokens import align_word_targets

        return align_word_targets(targets, column_values(other_rows, WORD_IDS), column_values(rows, columns[0]),
                                  column_values(rows, "input_ids"), tokenizer)

    def collator(self, processor):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(processor, label_pad_token_id=IGNORE_INDEX)

    # ------------------------------------------------------------------ models
    def auto_class(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def features(self, model, batch, pooling):
        from ..models.build import token_features

        return token_features(model, batch)

    # ------------------------------------------------------- loss and outputs
    def loss(self, logits, labels, spec):
        """Cross-entropy over every position with a tag; ``IGNORE_INDEX`` positions do not count."""
        return F.cross_entropy(logits.float().flatten(0, -2), labels.long().flatten(), ignore_index=IGNORE_INDEX)

    def row_losses(self, logits, labels, spec):
        """Each row's cross-entropy, averaged over its tagged positions (0 for a row without any)."""
        per_position = F.cross_entropy(logits.float().transpose(1, -1), labels.long(), ignore_index=IGNORE_INDEX,
                                       reduction="none")
        return per_position.sum(-1) / self.row_sizes(labels, spec).clamp(min=1)

    def row_sizes(self, labels, spec):
        """The row's tagged positions: ``loss`` averages over positions, so a longer sentence weighs more."""
        return (labels != IGNORE_INDEX).sum(-1).float()

    def distill_rows(self, student, teacher, labels, labeled):
        """Every tagged word is one example; other positions drop out."""
        tagged = labels != IGNORE_INDEX
        return (student[tagged], teacher[:, :student.shape[1]][tagged], labels[tagged],
                labeled[:, None].expand_as(tagged)[tagged])

    def gather(self, accelerator, logits, labels):
        # processes' batches may be padded to different lengths
        logits = accelerator.pad_across_processes(logits, dim=1)
        labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE_INDEX)
        return accelerator.gather_for_metrics((logits, labels))

    def compute_metrics(self, names, predictions, references, spec) -> dict[str, float]:
        """seqeval on tag sequences: positions whose reference is -100 drop out.

        Returns the asked micro scores, then ``<metric>_<TYPE>`` for every entity type (e.g. ``f1_PER``).
        """
        label_names = spec.label_names
        if not label_names:
            raise MetricError("token-classification metrics need the tag names (label_names), e.g. ['O', 'B-PER', 'I-PER']")
        preds, refs = np.asarray(predictions), np.asarray(references)
        if preds.shape != refs.shape or preds.ndim != 2:
            raise MetricError(f"token-classification expects (sentences, positions) arrays of tag ids; got predictions "
                              f"{preds.shape} and references {refs.shape}")
        keep = refs != IGNORE_INDEX
        if not keep.any():
            raise MetricError("cannot compute metrics on zero tagged words; check that the evaluation split is not empty")
        pairs = [([label_names[i] for i in p[k]], [label_names[i] for i in r[k]]) for p, r, k in zip(preds, refs, keep)]
        pairs = [pair for pair in pairs if pair[1]]
        output = load_metric_module("seqeval").compute(predictions=[p for p, _ in pairs], references=[r for _, r in pairs])
        results = {name: float(output[TOKEN_METRICS[name]]) for name in names}
        for kind in sorted(k for k, v in output.items() if isinstance(v, dict)):
            results.update({f"{m}_{kind}": float(output[kind][m]) for m in _PER_TYPE if m in names})
        return results

    def predictor(self, model, processor):
        """transformers' token-classification pipeline, word pieces grouped into whole entities."""
        from transformers import pipeline

        if hasattr(model, "merge_and_unload"):  # a peft adapter: the pipeline wants a plain transformers model
            model = model.merge_and_unload()
        tagger = pipeline("token-classification", model=model, tokenizer=processor, aggregation_strategy="simple",
                          device=model.device)

        def tag(texts: list, batch_size: int, progress=None) -> list[dict]:
            found = tagger((str(t) for t in texts), batch_size=batch_size) if texts else []  # a generator streams
            out = []
            for entities in found:
                out.append({"entities": [{**e, "score": float(e["score"])} for e in entities]})
                if progress is not None:
                    progress(1)
            return out

        return tag

    def prediction_inputs(self, ds, recipe, split: str = "validation") -> list:
        return [" ".join(map(str, words)) for words in ds[recipe.task.tokens]]

    # -------------------------------------------------------------------- card
    def phrase(self, spec, recipe) -> str:
        return f"token-classification ({spec.num_labels} tags per word)"

    def intended_use(self, spec) -> str:
        return f"tagging words as {', '.join(f'`{n}`' for n in spec.label_names)}"

    def example(self, recipe) -> str:
        import json

        return json.dumps(EXAMPLE_TOKENS)

    def example_args(self, recipe) -> str:
        import json

        return json.dumps([EXAMPLE_TOKENS])

    def pipeline_kwargs(self) -> str:
        return ', aggregation_strategy="simple"'

    def decode_snippet(self, spec) -> str:  # one tag per word piece
        return "print([model.config.id2label[i] for i in logits.argmax(-1)[0].tolist()])"

    def indexed(self, metric: str) -> bool:
        """The micro scores go into the Hub metadata, not each entity type's."""
        return "_" not in metric
