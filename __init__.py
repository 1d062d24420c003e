"""bcls: image-text retrieval trained with Binary and Continuous Label Supervision.

Sub-packages, bottom to top (each may import only those before it): :mod:`bcls.data` (formats, demo data),
:mod:`bcls.pipeline` (pseudo labels), :mod:`bcls.trainer` (models, losses, training, evaluation);
:mod:`bcls.cli` is the command line. Nothing inside bcls imports this root package.
"""

from .data.version import __version__

__all__ = ["__version__"]
