"""``nlp-transfer compare``: the grid of runs (``grid``), one cell in its own process (``cell``), the
transfer report (``report``) and LogME backbone ranking (``logme``).

Sits above training: it runs the same stages as ``train``. Must not import the API or the CLI.
"""
