"""Offline copies of the evaluate metric scripts that nlp_transfer ships.

Each ``<name>/<name>.py`` is a self-contained ``evaluate.Metric`` script that
``evaluate.load`` copies into its module cache, so it must import nothing from here.
"""
