"""Strategies: what trains and what the loss is. One module (or small package: ``distill/``, ``partial/``) per
strategy, and one registry (``registry.py``: ``STRATEGIES``, ``build_strategy``).

A strategy's options are a torch-free dataclass (recipe validation reads them); its hooks (``base.Strategy``) are
what the one loop calls. May import: errors, recipe.schema, tasks, data, models, evaluation, and ``adapt``'s
strategy pieces. Must not import training, recipe loading, inference, outputs, hub, compare or the API.
"""
