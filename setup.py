"""Which packages the distribution holds; everything else is in pyproject.toml (setuptools merges the two).

``[tool.setuptools.packages.find]`` alone cannot say it: it finds the ``nlp_transfer*`` folders on disk, but not the
data packages that live at the repo root and are installed under ``nlp_transfer`` by ``package-dir`` (pyproject.toml):
the model card templates (``model_cards/``) and the bundled recipes (``recipes/``). So: every package found, plus those.
"""

from setuptools import find_packages, setup

MAPPED_PACKAGES = {  # installed name -> folder in the repo
    "nlp_transfer.model_cards": "model_cards",
    "nlp_transfer.bundled_recipes": "recipes",
}

setup(
    packages=find_packages(include=["nlp_transfer", "nlp_transfer.*"]) + sorted(MAPPED_PACKAGES),
    package_dir=MAPPED_PACKAGES,
)
