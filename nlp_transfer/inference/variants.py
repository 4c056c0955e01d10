"""Inference variants of a saved model: how each is built, written into ``optimized/`` and loaded.

- ``fp32``: the model as saved (eager PyTorch).
- ``bf16``: bfloat16 weights (CPUs with native bf16, GPUs); written as a plain transformers folder.
- ``int8-dynamic``: ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (CPU). Quantized
  weights have no safetensors form, so ``optimized/`` records the recipe and the model is
  quantized from the output's own fp32 weights at load time (deterministic: the same int8 model).
- ``onnx-fp32``, ``onnx-int8``: the model exported to ONNX and run by ONNX Runtime (text models,
  the ``onnx`` extra); int8 is ONNX Runtime's dynamic quantization (int8 weights, uint8
  activations: the AVX-512 VNNI / AVX2 layout).

Every variant keeps the first-token-only last layer where the head allows it (``first_token``).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..errors import ModelError
from ..models.build import load_model
from ..models.first_token import enable_first_token
from ..training.precision import has_native_bf16

logger = logging.getLogger(__name__)

VARIANTS = ("fp32", "bf16", "int8-dynamic", "onnx-fp32", "onnx-int8")
OPTIMIZED = "optimized"  # the subfolder of an output that holds the selected variant
OPTIMIZE_FILE = "optimize.json"
ONNX_FILES = {"onnx-fp32": "model.onnx", "onnx-int8": "model_int8.onnx"}
ONNX_INSTALL = "pip install 'nlp-transfer[onnx]'"


def unavailable_reason(variant: str, device: torch.device, images: bool) -> str | None:
    """Why ``variant`` cannot run here (None when it can)."""
    if variant == "bf16" and not has_native_bf16():
        return "no native bf16 on this machine (emulated bf16 is slower than fp32)"
    if variant == "int8-dynamic":
        if device.type != "cpu":
            return "dynamic int8 quantization runs on CPU only"
        if not torch.backends.quantized.supported_engines or torch.backends.quantized.engine == "none":
            return "this torch build has no quantized engine"
    if variant.startswith("onnx"):
        if images:
            return "the ONNX variants cover text models"
        if device.type != "cpu":
            return "the ONNX variants run on ONNX Runtime's CPU provider"
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed: `{ONNX_INSTALL}`"
    return None


def build_variant(variant: str, model, workdir: Path, sample: dict | None = None):
    """``variant`` of a loaded fp32 ``model`` (not changed), ready to predict.

    Args:
        variant: One of ``VARIANTS``.
        model: The fp32 model as loaded (a peft adapter is merged into a copy first).
        workdir: Where ONNX files are written (they are loaded from there).
        sample: A tokenized batch (with padding) to trace the ONNX export with.
    """
    if variant == "fp32":
        return model
    plain = _plain_copy(model)
    if variant == "bf16":
        return plain.to(torch.bfloat16)
    if variant == "int8-dynamic":
        return _quantize(plain)
    if variant in ONNX_FILES:
        return _build_onnx(variant, plain, workdir, sample)
    raise ValueError(f"variant: got {variant!r}; expected one of {', '.join(VARIANTS)}")


def save_variant(variant: str, built, processor, dest: Path) -> None:
    """Write what loading ``variant`` needs into ``dest`` (the staged ``optimized/`` folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    if variant == "bf16":
        built.save_pretrained(dest)
        processor.save_pretrained(dest)
    elif variant in ONNX_FILES:
        shutil.copyfile(built.path, dest / ONNX_FILES[variant])
        built.config.save_pretrained(dest)
        processor.save_pretrained(dest)
    # fp32 and int8-dynamic: nothing beyond optimize.json (built from the output's own weights at load time)


def load_variant(output_dir: Path, variant: str, device: torch.device):
    """The model of ``variant`` for the output at ``output_dir``, first-token last layer enabled where it applies."""
    folder = output_dir / OPTIMIZED
    if variant == "fp32":
        model = load_model(output_dir).eval().to(device)
    elif variant == "bf16":
        model = load_model(folder).eval().to(device, dtype=torch.bfloat16)
    elif variant == "int8-dynamic":
        model = _quantize(_plain_copy(load_model(output_dir).eval(), copy_first=False))
    elif variant in ONNX_FILES:
        reason = unavailable_reason(variant, device, images=False)
        if reason:
            raise ModelError(f"'{folder}' holds the {variant} variant, which cannot run here: {reason}. "
                             "Use variant='fp32' (--variant fp32) for the output's own weights")
        return OnnxClassifier(folder / ONNX_FILES[variant], _config(folder))
    else:
        raise ModelError(f"'{folder / OPTIMIZE_FILE}': unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    enable_first_token(model)
    return model


def selected_variant(output_dir: Path) -> str | None:
    """The variant ``optimize`` wrote into ``output_dir/optimized`` (None when there is none)."""
    path = output_dir / OPTIMIZED / OPTIMIZE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["selected"]["variant"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"'{path}' is not a valid optimize report ({exc}); run `nlp-transfer optimize "
                         f"{output_dir}` again, or delete {output_dir / OPTIMIZED}") from None


def _plain_copy(model, copy_first: bool = True):
    """A plain transformers model with the same weights: peft adapters merged (faster to run, same logits)."""
    model = copy.deepcopy(model) if copy_first else model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.eval()


def _quantize(model):
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model.float().cpu(), {torch.nn.Linear}, dtype=torch.qint8)


def _config(folder: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder)


def _build_onnx(variant: str, model, workdir: Path, sample: dict | None):
    """Export ``model`` (its first-token last layer included) to ONNX; quantize the graph for ``onnx-int8``."""
    if sample is None:
        raise ValueError("an ONNX export needs a sample batch to trace")
    enable_first_token(model)
    workdir.mkdir(parents=True, exist_ok=True)
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample]
    fp32_path = workdir / ONNX_FILES["onnx-fp32"]
    if not fp32_path.is_file():
        axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
        with torch.no_grad():
            # the TorchScript exporter: no extra dependency, and it traces the padded sample's masking path
            torch.onnx.export(model.float().cpu(), (), str(fp32_path), kwargs={k: sample[k] for k in names},
                              input_names=names, output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    path = fp32_path
    if variant == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path = workdir / ONNX_FILES["onnx-int8"]
        quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QInt8)
    return OnnxClassifier(path, model.config)


class OnnxClassifier:
    """An ONNX Runtime session that answers like a transformers classifier: ``model(**batch).logits``."""

    def __init__(self, path: Path, config):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same thread budget as the PyTorch variants
        self.path, self.config = Path(path), config
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.device = torch.device("cpu")

    def __call__(self, **batch) -> SimpleNamespace:
        feed = {name: np.asarray(batch[name].cpu(), dtype=np.int64) for name in self.input_names}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))

    def eval(self):
        return self


def load_for_prediction(output_dir: Path, variant: str, device: torch.device, dtype: torch.dtype | None):
    """The model a ``Predictor`` runs, and the name of what it is.

    Args:
        output_dir: The output folder.
        variant: ``auto`` (``optimized/`` when ``nlp-transfer optimize`` wrote one, else ``fp32``),
            ``fp32`` (the output's own weights) or ``optimized`` (refused when there is none).
        device: Where the model runs.
        dtype: Cast the output's own weights (``fp32`` only; ``None``: as saved).
    """
    if variant not in ("auto", "fp32", "optimized"):
        raise ValueError(f"Predictor variant: got {variant!r}; expected one of auto, fp32, optimized")
    chosen = selected_variant(output_dir) if variant != "fp32" else None
    if variant == "optimized" and chosen is None:
        raise ModelError(f"variant 'optimized': '{output_dir}' has no {OPTIMIZED}/{OPTIMIZE_FILE}; run "
                         f"`nlp-transfer optimize {output_dir}` first, or use the fp32 variant")
    if variant == "optimized" and dtype is not None:
        raise ValueError(f"Predictor: dtype={dtype} applies to the fp32 weights; the optimized variant ({chosen}) has "
                         "its own precision. Pass one of them")
    if chosen is None or dtype is not None:
        model = load_model(output_dir).eval().to(device, dtype=dtype)
        enable_first_token(model)
        return model, "fp32" if dtype in (None, torch.float32) else str(dtype).removeprefix("torch.")
    logger.info("Predicting with the optimized variant of %s: %s (see %s)", output_dir, chosen,
                output_dir / OPTIMIZED / OPTIMIZE_FILE)
    return load_variant(output_dir, chosen, device), chosen
