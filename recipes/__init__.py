"""The bundled recipes, ``<task>/<strategy>.yaml`` and quickstart.yaml (installed as ``nlp_transfer.bundled_recipes``).

Listed and copied by ``nlp-transfer recipes list|copy`` (``nlp_transfer.recipe.bundled``).
"""
