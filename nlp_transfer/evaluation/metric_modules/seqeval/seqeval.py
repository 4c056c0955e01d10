"""Entity-level precision, recall and F1 of tag sequences (CoNLL-style), with the seqeval package."""

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report

_DESCRIPTION = ("Entity-level scores of IOB-style tag sequences as the CoNLL shared tasks score them (conlleval): "
                "an entity counts only when its type and its exact span match. Micro-averaged precision, recall and F1 "
                "over all entities, the same per entity type, and token accuracy.")
_CITATION = "Hiroki Nakayama, seqeval: A Python framework for sequence labeling evaluation, 2018."
_INPUTS = """
Args:
    predictions (list of list of str): predicted tags per sentence, e.g. [["B-PER", "I-PER", "O"]].
    references (list of list of str): gold tags, same shapes as predictions.
    suffix (bool): tags are written TYPE-B instead of B-TYPE.
    scheme (str, optional): "IOB1", "IOB2", "IOE1", "IOE2", "IOBES" or "BILOU" for strict matching;
        default None: conlleval's lenient reading (an I- tag after O starts an entity).
    mode (str, optional): "strict" with a scheme.
    zero_division (int or "warn"): the value of 0/0 scores.
Returns:
    overall_precision, overall_recall, overall_f1, overall_accuracy (floats), and per entity type
    a dict {precision, recall, f1, number}.
"""


class Seqeval(evaluate.Metric):
    """seqeval's entity-level report, flattened to numbers."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
            reference_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(self, predictions, references, suffix=False, scheme=None, mode=None, zero_division=0):
        if scheme is not None:
            import seqeval.scheme

            scheme = getattr(seqeval.scheme, scheme)
        report = classification_report(y_true=references, y_pred=predictions, suffix=suffix, output_dict=True,
                                       scheme=scheme, mode=mode, zero_division=zero_division)
        micro = report.pop("micro avg")
        for key in ("macro avg", "weighted avg"):
            report.pop(key, None)
        scores = {kind: {"precision": float(s["precision"]), "recall": float(s["recall"]), "f1": float(s["f1-score"]),
                         "number": int(s["support"])} for kind, s in report.items()}
        scores["overall_precision"] = float(micro["precision"])
        scores["overall_recall"] = float(micro["recall"])
        scores["overall_f1"] = float(micro["f1-score"])
        scores["overall_accuracy"] = float(accuracy_score(y_true=references, y_pred=predictions))
        return scores
