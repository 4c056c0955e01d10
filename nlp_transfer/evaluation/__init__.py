"""Evaluation: metrics that work offline, computed with ``evaluate`` from the metric modules shipped here.

A library below the task types: callers pass the metric names and arrays the task type decided.
May import: errors, tasks.spec. Must not import tasks or anything above.
"""
