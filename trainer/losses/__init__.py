"""BCLS training losses: a binary triplet loss and a continuous Kendall ranking loss with SW-HS.

* :mod:`~.triplet` — binary losses (VSE++ hardest, mean, two Triplet-SN readings) and their registry;
* :mod:`~.kendall` — :class:`KendallParams`, the SW-HS Kendall terms and :class:`KendallLoss`;
* :mod:`~.total` — :class:`BCLSLoss`, ``L = L_bin + λ·L_cont``;
* :mod:`~.reference` — the O(B³) Kendall reference (tests and benchmarks only).

Conventions: losses are pure functions ``(scores, labels) -> per-element terms -> reduction`` with a thin
``nn.Module`` holding the hyper-parameters; mining is separate from the surrogate; "nothing valid" gives a zero
that still has a gradient; everything follows the device of its inputs. May import: :mod:`bcls.data`.
"""

from .kendall import (
                      DEFAULT_KENDALL,
                      SURROGATES,
                      KendallLoss,
                      KendallParams,
                      kendall_loss,
                      kendall_loss_with_count,
                      kendall_swhs_terms,
)
from .reference import kendall_naive, kendall_naive_terms
from .total import BCLSLoss
from .triplet import (
                      BINARY_LOSSES,
                      BinaryTripletLoss,
                      TripletLoss,
                      TripletSNSoftmaxLoss,
                      TripletSNSwitchLoss,
                      binary_loss_params,
                      make_binary_loss,
                      triplet_sn_softmax_terms,
                      triplet_sn_switch_terms,
                      triplet_sn_switched,
                      triplet_terms,
)

__all__ = ["BINARY_LOSSES", "DEFAULT_KENDALL", "SURROGATES", "BCLSLoss", "BinaryTripletLoss", "KendallLoss",
           "KendallParams", "TripletLoss", "TripletSNSoftmaxLoss", "TripletSNSwitchLoss", "binary_loss_params",
           "kendall_loss", "kendall_loss_with_count", "kendall_naive", "kendall_naive_terms", "kendall_swhs_terms",
           "make_binary_loss", "triplet_sn_softmax_terms", "triplet_sn_switch_terms", "triplet_sn_switched",
           "triplet_terms"]
