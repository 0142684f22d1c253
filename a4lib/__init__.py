"""a4lib: the DD2424 Assignment 4 character-level RNN, as a library.

BLAS runs single-threaded unless the environment says otherwise: the matrices here are small,
and threads only add overhead (set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS to override; it takes
effect only if a4lib is imported before numpy).
"""
import os
from importlib.metadata import PackageNotFoundError, version as _installed

try:
    __version__ = _installed("a4lib")
except PackageNotFoundError:  # a checkout used without installing it
    __version__ = "unknown"

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from .config import Config, ConfigError  # noqa: E402
from .corpus import BUILTIN, EOT, Corpus, CorpusError, load_corpus  # noqa: E402
from .model import Network, make_network  # noqa: E402
from .sample import generate  # noqa: E402
from .train import Trainer, TrainingError, evaluate, train  # noqa: E402
from . import sweep  # noqa: E402  (a4lib.sweep.sweep, a4lib.sweep.run_many)

__all__ = ["__version__", "BUILTIN", "EOT", "Corpus", "CorpusError", "load_corpus", "Network", "make_network", "generate",
           "Config", "ConfigError", "Trainer", "TrainingError", "evaluate", "train"]
