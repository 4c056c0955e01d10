"""Models: build a backbone with its task head, save and load outputs, the parts of a task model.

Owns the table of model families (layer groups, first-token support, LoRA targets, image heads), mean pooling,
the first-token-only last layer and where a model's files are. A library below the task types: it takes
what the task type decided as arguments. May import: errors, recipe.schema, tasks.spec, hub.offline (known
offline copies). Must not import tasks, strategies, training or anything above.
"""
