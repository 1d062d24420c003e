"""Runs a script with ``torch.Tensor.cuda`` as a no-op: the CPU dry run of ``bench/gpu_coco_train.sh``'s VSE∞ step,
whose ``forward_emb`` calls ``.cuda()`` even without a GPU. Not used on a GPU, where VSE∞ runs as it is.

    python bench/cpu_run_vse.py train.py --data_path …
"""

import runpy
import sys

import torch

torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
