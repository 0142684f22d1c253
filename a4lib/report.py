"""Kept only for notebooks/sweep.ipynb, which still calls ``report.figure``: the report's words
now live in the notebooks, its numbers in ``a4lib.analysis``, its display helpers in
``a4lib.display``. Remove this module once that notebook uses ``display.figure``."""
from .display import figure  # noqa: F401
