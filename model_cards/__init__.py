"""Jinja templates for generated model cards (installed as ``nlp_transfer.model_cards``)."""
