"""Data: files and Hub datasets, label encoding, sampling, tokenisation, CoNLL, images, cell checks.

A library below the task types: it takes what the task type decided (columns, label handling, unlabeled
values) as plain arguments and never looks a task type up by name. May import: errors, recipe.schema,
tasks.spec. Must not import tasks, strategies, training or anything above.
"""
