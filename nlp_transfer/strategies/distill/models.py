"""Teacher and student models for ``distill``: loading and checking the teacher, building a
layer-copy student (DistilBERT-style), layer maps and the hidden-state projections."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from transformers.modeling_outputs import SequenceClassifierOutput

from ...data.images import is_image_processor, load_image_processor
from ...errors import ModelError
from ...models.build import load_model, load_tokenizer
from ...models.families import layer_paths
from ...models.files import resolve_model_path
from ...recipe.schema import PATHS_RULE

_PROBE = "Hello World! It's 42 degrees, naïve café-goers."


def load_teacher(name: str) -> tuple[torch.nn.Module, str]:
    """The teacher (a LoRA adapter comes merged into one plain model) and the folder it came from."""
    folder = _teacher_folder(name)
    teacher = load_model(folder)
    if hasattr(teacher, "merge_and_unload"):  # a peft adapter: one plain model is simpler and faster
        teacher = teacher.merge_and_unload()
    else:
        _check_is_classifier(teacher, name)
    return teacher.eval().requires_grad_(False), folder


def first_token_states(out, layers: list[int], model) -> torch.Tensor:
    """(batch, len(layers), width): the first token's state after each of ``layers`` (0-based)."""
    if out.hidden_states is None:
        raise ModelError(f"strategy.hidden_weight: {type(model).__name__} returns no hidden states, so the hidden-state "
                         "loss cannot be computed; set strategy.hidden_weight=0")
    return torch.stack([out.hidden_states[i + 1][:, 0] for i in layers], 1)


class StudentWithProjections(torch.nn.Module):
    """The student plus learned linear maps of its layers' first-token states to the teacher's width.

    Only the student is exported; the projections exist for the hidden-state loss (identity
    when the widths agree).
    """

    def __init__(self, student, teacher_width: int):
        super().__init__()
        self.student = student
        width, depth = student.config.hidden_size, student.config.num_hidden_layers
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(width, teacher_width) if width != teacher_width else torch.nn.Identity() for _ in range(depth))

    @property
    def task_model(self):
        return self.student

    def forward(self, output_hidden_states: bool = False, **inputs):
        out = self.student(**inputs, output_hidden_states=output_hidden_states)
        if not output_hidden_states:
            return out
        states = first_token_states(out, list(range(len(self.projections))), self.student)
        projected = torch.stack([proj(states[:, i]) for i, proj in enumerate(self.projections)], 1)
        return SequenceClassifierOutput(logits=out.logits, hidden_states=projected)


def evenly_spaced(depth: int, n: int) -> list[int]:
    """``n`` of ``depth`` layer indices, first and last included (12 -> 6 gives DistilBERT's 0,2,4,7,9,11)."""
    if n > depth:
        raise ModelError(f"strategy.student_num_layers: got {n}, but the teacher has only {depth} layers; "
                         f"choose 1 to {depth}")
    if n == 1:
        return [depth - 1]
    return [int(i * (depth - 1) / (n - 1) + 0.5) for i in range(n)]


def hidden_layer_map(student_depth: int, teacher_depth: int, copied: list[int] | None = None,
                     explicit: list[int] | None = None) -> list[int]:
    """The teacher layer (0-based) each student layer's hidden state is matched to."""
    if explicit is not None:
        if len(explicit) != student_depth or max(explicit) >= teacher_depth:
            raise ModelError(f"strategy.hidden_layers: got {explicit}; expected {student_depth} teacher layer indices "
                             f"(one per student layer), each below {teacher_depth}")
        return list(explicit)
    if copied is not None:
        return list(copied)
    return [max(0, int((j + 1) * teacher_depth / student_depth + 0.5) - 1) for j in range(student_depth)]


def encoder_layers_path(model) -> str:
    """The dotted path of the model's encoder layer list (e.g. ``bert.encoder.layer``).

    Raises:
        ModelError: The layout is unknown; the message lists the model's layer lists.
    """
    base, paths = model.base_model_prefix, layer_paths(model.config.model_type)
    for path in paths:
        try:
            layers = model.get_submodule(f"{base}.{path}")
        except AttributeError:
            continue
        if isinstance(layers, torch.nn.ModuleList) and len(layers) == model.config.num_hidden_layers:
            return f"{base}.{path}"
    lists = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    raise ModelError(f"strategy.student_layers: cannot find the encoder layers of {type(model).__name__} "
                     f"(model type {model.config.model_type!r}); looked for {', '.join(f'{base}.{p}' for p in paths)} "
                     f"with {model.config.num_hidden_layers} layers, found layer lists: {lists or 'none'}. Distill into "
                     "a smaller model instead: set model.name and strategy.student_num_layers=null")


def build_student(teacher, layers: list[int]):
    """A copy of ``teacher`` keeping the embeddings, the encoder layers ``layers`` and the head, bit for bit."""
    depth = teacher.config.num_hidden_layers
    if max(layers) >= depth:
        raise ModelError(f"strategy.student_layers: got {layers}, but the teacher has {depth} layers (0 to {depth - 1})")
    prefix = encoder_layers_path(teacher) + "."
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == depth:
        config.layer_types = [config.layer_types[i] for i in layers]
    student = type(teacher)(config)
    renumber = {old: new for new, old in enumerate(layers)}
    weights = {}
    for name, tensor in teacher.state_dict().items():
        if name.startswith(prefix):
            index, rest = name[len(prefix):].split(".", 1)
            if int(index) not in renumber:
                continue
            name = f"{prefix}{renumber[int(index)]}.{rest}"
        weights[name] = tensor
    student.load_state_dict(weights, strict=True)
    return student.float()


def _teacher_folder(teacher: str) -> str:
    try:
        path = resolve_model_path(teacher)
        return path if Path(path).is_dir() else snapshot_download(path)
    except Exception as exc:  # ModelError offline, hub errors online
        reason = str(exc).removeprefix("model.name: ")
        rule = "" if PATHS_RULE in reason else f"; {PATHS_RULE}"
        raise ModelError(f"strategy.teacher: cannot find {teacher!r} ({reason}). Train the teacher first (e.g. "
                         f"nlp-transfer train recipes/sst2/full.yaml writes runs/sst2-full) or give a Hub id{rule}") from None


def _check_is_classifier(teacher, name: str) -> None:
    architectures = teacher.config.architectures or []
    heads = ("ForSequenceClassification", "ForTokenClassification", "ForImageClassification")
    if architectures and not any(a.endswith(heads) for a in architectures):
        kind = "image" if getattr(teacher, "main_input_name", None) == "pixel_values" else "sequence"
        raise ModelError(f"strategy.teacher: {name!r} is a {', '.join(architectures)} without a trained "
                         f"{kind}-classification head; fine-tune it first (e.g. strategy full) and distill from that output")


def check_teacher_labels(config, task, name: str) -> None:
    """The teacher must predict the data's classes in the same order (its label maps become the student's)."""
    if not task.kind.named_outputs:  # scores, not classes: only the count must agree
        if config.num_labels != task.num_labels:
            raise ModelError(f"strategy.teacher: {name!r} has {config.num_labels} outputs; a {task.type} teacher has "
                             f"{task.num_labels}")
        return
    teacher_labels = [str(config.id2label[i]) for i in sorted(config.id2label)]
    data_labels = [task.id2label[i] for i in sorted(task.id2label)]
    problem = config.problem_type
    if teacher_labels != data_labels or (problem and problem != task.problem_type):
        raise ModelError(f"strategy.teacher: the teacher's labels {teacher_labels} (problem type {problem}) differ from the "
                         f"data's labels {data_labels} ({task.problem_type}); the student learns the teacher's outputs, "
                         "so both must be the same classes in the same order. Set task.labels to the teacher's "
                         f"labels in order (task.labels=[{', '.join(teacher_labels)}]) or distill from a matching teacher")


def check_same_tokenizer(tokenizer, teacher_path: str, teacher_name: str) -> None:
    """Teacher and student read the same token ids, so they need the same vocabulary and splitting.

    Image models: the same pixels, so the same image processor settings.
    """
    if is_image_processor(tokenizer):
        _check_same_image_processor(tokenizer, teacher_path, teacher_name)
        return
    if not same_tokenizer(tokenizer, teacher_path):
        teacher_tok = _teacher_tokenizer(teacher_path)
        sizes = f"{len(tokenizer)} tokens vs {len(teacher_tok) if teacher_tok is not None else 'no tokenizer'}"
        raise ModelError(f"strategy.teacher: the student's tokenizer ({tokenizer.name_or_path}) differs from the teacher's "
                         f"({teacher_name}; {sizes}); distillation feeds the same token ids to both. Choose a student "
                         "with the teacher's tokenizer, or build it from the teacher with strategy.student_num_layers")


def same_tokenizer(tokenizer, teacher_path: str) -> bool:
    """Whether the teacher folder's tokenizer gives the same ids as ``tokenizer`` (same vocabulary and splitting)."""
    teacher_tok = _teacher_tokenizer(teacher_path)
    return teacher_tok is not None and teacher_tok.get_vocab() == tokenizer.get_vocab() and \
        teacher_tok(_PROBE)["input_ids"] == tokenizer(_PROBE)["input_ids"]


def _teacher_tokenizer(teacher_path: str):
    try:
        return load_tokenizer(teacher_path)
    except ModelError:
        return None


def _check_same_image_processor(processor, teacher_path: str, teacher_name: str) -> None:
    try:
        teacher = load_image_processor(teacher_path).to_dict()
    except ModelError:
        teacher = None
    student = processor.to_dict()
    if teacher is None or {k: v for k, v in teacher.items() if k != "image_processor_type"} != \
            {k: v for k, v in student.items() if k != "image_processor_type"}:
        differ = sorted(k for k in set(student) | set(teacher or {}) if (teacher or {}).get(k) != student.get(k))
        raise ModelError(f"strategy.teacher: the student's image processor differs from the teacher's ({teacher_name}) in "
                         f"{', '.join(differ) or 'its presence'}; distillation feeds the same pixels to both. Choose a "
                         "student with the teacher's preprocessing, or build it from the teacher with strategy.student_num_layers")
