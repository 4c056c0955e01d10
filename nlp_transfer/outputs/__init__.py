"""Outputs: the Hub-ready folder written whole or not at all, checked by reloading it, and its model card.

May import: errors, recipe.schema, tasks, models, adapt (what a card says about adaptation).
Must not import training, inference, hub, compare or the API.
"""
