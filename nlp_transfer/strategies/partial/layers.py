"""Running a task model from a frozen bottom's cached output (what ``strategy partial`` trains).

The encoder's layer list is found from the model (``models.encoder_layers``), so this works for every
family whose encoder loops over its own layer list; ``strategy partial`` checks the cached path against
the whole model on a few rows and trains without the cache where they differ.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from ...models.build import base_encoder, encoder_layers, encoder_layers_at

BOTTOM = "bottom"  # the column (and forward argument) of cached bottom outputs


def _layer_input(args: tuple, kwargs: dict):
    """The hidden states a layer (or a convolutional stage) receives: its first argument."""
    if args:
        return args[0], lambda value: ((value, *args[1:]), kwargs)
    key = next(k for k in ("hidden_states", "hidden_state", "x") if k in kwargs)
    return kwargs[key], lambda value: (args, {**kwargs, key: value})


class _Stop(Exception):
    """Raised by a hook once the bottom's output is captured: nothing above it needs to run."""


class PartialModel(torch.nn.Module):
    """What ``partial`` trains: the task model, run from a cached bottom output when a batch holds one.

    With ``bottom`` given, the encoder's layer list holds only the trained layers for that call and the
    first of them reads ``bottom`` instead of the embeddings' output; the model's own forward does the
    rest (masks, pooler, head). Without it, the whole model runs (the frozen bottom in eval mode).
    """

    def __init__(self, model, cut: int):
        super().__init__()

        self.model, self.cut = model, cut
        self.layers_path, layers = encoder_layers_at(model)
        first = self.layers_path[len(model.base_model_prefix) + 1:].split(".")[0]
        below = []  # the backbone's modules before its layers (the embeddings), then the frozen layers
        for name, child in base_encoder(model).named_children():
            if name == first:
                break
            below.append(child)
        self._bottom = below + list(layers[:cut])

    @property
    def task_model(self):
        return self.model

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._bottom:
            module.eval()
        return self

    def forward(self, bottom=None, **inputs):
        if bottom is None:
            return self.model(**inputs)
        with self._from_cut(bottom):
            return self.model(**inputs)

    @contextmanager
    def _from_cut(self, bottom):
        holder_path, attr = self.layers_path.rsplit(".", 1)
        holder = self.model.get_submodule(holder_path)
        layers = holder._modules[attr]
        top = torch.nn.ModuleList(list(layers)[self.cut:])
        handle = top[0].register_forward_pre_hook(lambda m, a, k: _layer_input(a, k)[1](bottom), with_kwargs=True)
        holder._modules[attr] = top
        try:
            yield
        finally:
            holder._modules[attr] = layers
            handle.remove()

    def bottom_outputs(self, inputs: dict):
        """What the frozen bottom hands the first trained layer, for a batch of model inputs."""
        captured = []

        def capture(module, args, kwargs):
            captured.append(_layer_input(args, kwargs)[0])
            raise _Stop

        handle = encoder_layers(self.model)[self.cut].register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.model(**inputs)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured[0]


class BottomCollator:
    """The task's collator for everything but ``bottom``; ``bottom`` padded to the batch's token layout."""

    def __init__(self, base):
        self.base = base

    def __call__(self, rows: list[dict]) -> dict:
        bottoms = [torch.as_tensor(np.asarray(r[BOTTOM]), dtype=torch.float32) for r in rows]
        batch = self.base([{k: v for k, v in r.items() if k != BOTTOM} for r in rows])
        if "attention_mask" in batch and bottoms[0].ndim == 2:  # text: each row's tokens where its mask is 1
            mask = batch["attention_mask"].bool()
            out = torch.zeros(*mask.shape, bottoms[0].shape[-1])
            out[mask] = torch.cat(bottoms)
            batch[BOTTOM] = out
        else:
            batch[BOTTOM] = torch.stack(bottoms)
        return batch
