"""Training: THE loop, checkpoints, the run lock, schedules, precision, processes, and the runs built on them.

The loop (``loop``) steps every strategy's optimizer and knows neither task types nor strategy names. The low
modules (loop, checkpoints, runlock, schedules, precision, processes, heap) import only errors, recipe.schema, tasks
and strategies.base. Above them: the public stages of a run (``stages``: load data, build, preprocess, prepare, fit,
evaluate, export), what every run needs around them (``session``: lock, checks, cleanup) and the single-task run
(``single``: ``train``, ``evaluate``); the multi-task run (``multitask/``) is their peer on the same stages. Must not
import multitask, compare, the API or the CLI.
"""
