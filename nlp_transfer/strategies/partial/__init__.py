"""The ``partial`` strategy: the top N layers train on a cached frozen bottom's outputs.

``strategy`` is the strategy; ``layers`` runs a task model from the cached bottom. May import what
strategies may import.
"""
