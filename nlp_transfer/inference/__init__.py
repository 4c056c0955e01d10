"""Inference: ``Predictor`` over a saved output folder, inference variants and ``optimize``.

May import: errors, recipe, tasks, data, models, evaluation, outputs.export (reading run files).
Must not import training, hub, compare or the API.
"""
