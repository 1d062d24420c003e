"""bcls: image-text retrieval trained with Binary and Continuous Label Supervision.

Sub-packages: :mod:`bcls.data` (formats, demo data), :mod:`bcls.pipeline` (pseudo labels),
:mod:`bcls.trainer` (models, losses, training, evaluation); :mod:`bcls.cli` is the command line.
"""

__version__ = "0.1.0"
