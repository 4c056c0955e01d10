"""Hyperparameter and strategy search (``nlp-transfer tune``) on Optuna: the ``tune`` section of a recipe (``space``),
the study on Optuna's storages (workers on several machines share one), trials run through the same stages as
``train`` (``training.single``) and pruned through the loop's evaluation observers (``training.hooks``), and the study
folder's report. It may import every layer below ``api``; only ``api`` and ``cli`` import it."""
