"""Tests of bcls.trainer.losses: triplet terms, Kendall/SW-HS (fast vs O(B^3) tensor reference vs Python loop)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bcls.data.infra.errors import ConfigError
from bcls.trainer.losses import (
    BINARY_LOSSES,
    BCLSLoss,
    BinaryTripletLoss,
    KendallLoss,
    KendallParams,
    TripletLoss,
    TripletSNSoftmaxLoss,
    TripletSNSwitchLoss,
    binary_loss_params,
    kendall_loss,
    kendall_loss_with_count,
    kendall_naive,
    kendall_naive_terms,
    kendall_swhs_terms,
    make_binary_loss,
    triplet_sn_softmax_terms,
    triplet_sn_switch_terms,
    triplet_sn_switched,
    triplet_terms,
)

SURROGATES = ("sigmoid", "tanh", "hinge")


# ----------------------------------------------------------------------------------------------- helpers
def _inputs(B: int, seed: int, tied: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random float64 (S, R, label_mask); NaN labels where unknown; some rows fully unknown."""
    g = torch.Generator().manual_seed(seed)
    S = torch.rand(B, B, generator=g, dtype=torch.float64) * 2 - 1
    if tied:  # few distinct values -> many ties (and gaps hitting the 0.1 boundary region)
        R = torch.randint(0, 5, (B, B), generator=g).double() / 4
    else:
        R = torch.rand(B, B, generator=g, dtype=torch.float64)
    R.fill_diagonal_(1.0)
    M = torch.rand(B, B, generator=g) < 0.6
    M.fill_diagonal_(True)
    if B >= 5:
        M[1] = False  # an all-unknown row (and column entry)
        M[:, 3] = False
    R = torch.where(M, R, torch.full_like(R, math.nan))
    return S, R, M


def _surr(x: float, surrogate: str, temperature: float, margin: float) -> float:
    if surrogate == "sigmoid":
        return 1.0 / (1.0 + math.exp(-x / temperature))
    if surrogate == "tanh":
        return 0.5 * (1.0 + math.tanh(x / temperature))
    return max(0.0, margin + x)


def _loop_terms(S, R, M, window, gap, surrogate, temperature, margin, n_hard):
    """Plain Python triple loop over (query, anchor, partner); rows are queries."""
    S, R, M = S.tolist(), R.tolist(), M.tolist()
    Q, C = len(S), len(S[0])
    terms = [[0.0] * C for _ in range(Q)]
    valid = [[False] * C for _ in range(Q)]
    for q in range(Q):
        known = [j for j in range(C) if M[q][j]]
        order = sorted(known, key=lambda j: (-R[q][j], j))
        rank = {j: i for i, j in enumerate(order)}
        for k in known:
            partners = [l for l in known if rank[l] - rank[k] >= window and R[q][l] < R[q][k] - gap]
            if not partners:
                continue
            partners.sort(key=lambda l: -S[q][l])
            vals = [_surr(S[q][l] - S[q][k], surrogate, temperature, margin) for l in partners[:n_hard]]
            terms[q][k] = sum(vals) / len(vals)
            valid[q][k] = True
    return torch.tensor(terms, dtype=torch.float64), torch.tensor(valid)


def _loop_loss(S, R, M, **kw) -> float:
    t1, v1 = _loop_terms(S, R, M, **kw)
    t2, v2 = _loop_terms(S.t(), R.t(), M.t(), **kw)
    n = int(v1.sum() + v2.sum())
    return float(t1[v1].sum() + t2[v2].sum()) / max(n, 1)


# ----------------------------------------------------------------------------------------------- triplet
def _triplet_loop(S: torch.Tensor, margin: float, mining: str, pmask: torch.Tensor | None):
    B = S.shape[0]
    out = []
    for X, P in ((S, pmask), (S.t(), None if pmask is None else pmask.t())):
        terms = []
        for i in range(B):
            costs = [
                max(0.0, margin + float(X[i, j]) - float(X[i, i]))
                for j in range(B)
                if j != i and not (P is not None and bool(P[i, j]))
            ]
            if not costs:
                terms.append(0.0)
            else:
                terms.append(max(costs) if mining == "hardest" else sum(costs) / len(costs))
        out.append(torch.tensor(terms, dtype=torch.float64))
    return out


@pytest.mark.parametrize("mining", ["hardest", "mean"])
@pytest.mark.parametrize("B", [1, 2, 6])
def test_triplet_terms_match_loop(mining: str, B: int) -> None:
    g = torch.Generator().manual_seed(B)
    S = torch.rand(B, B, generator=g, dtype=torch.float64)
    pmask = torch.zeros(B, B, dtype=torch.bool)
    if B >= 6:  # captions 0 and 1 belong to image 0 (and 1 to 1 ...): symmetric extra positives
        pmask[0, 1] = pmask[1, 0] = True
        pmask[2, 3] = True
    for pm in (None, pmask):
        i2t, t2i = triplet_terms(S, margin=0.2, mining=mining, positive_mask=pm)
        ref_i2t, ref_t2i = _triplet_loop(S, 0.2, mining, pm)
        torch.testing.assert_close(i2t, ref_i2t)
        torch.testing.assert_close(t2i, ref_t2i)


def test_triplet_loss_reduction_and_gradient() -> None:
    S = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    for name in BINARY_LOSSES:
        loss_mod = make_binary_loss(name, margin=0.3)
        assert isinstance(loss_mod, BinaryTripletLoss) and loss_mod.margin == 0.3
        loss = loss_mod(S)
        i2t, t2i = loss_mod.terms(S)
        torch.testing.assert_close(loss, i2t.mean() + t2i.mean())
        if isinstance(loss_mod, TripletLoss):
            torch.testing.assert_close((i2t, t2i), triplet_terms(S, 0.3, loss_mod.mining))
        (grad,) = torch.autograd.grad(loss, S)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # B = 1: no negatives -> zero that still has a gradient
    s1 = torch.ones(1, 1, requires_grad=True)
    loss = TripletLoss()(s1)
    assert loss.item() == 0.0 and loss.requires_grad


def test_binary_registry_errors() -> None:
    with pytest.raises(ConfigError, match="triplet-hardest, triplet-mean"):
        make_binary_loss("contrastive")
    with pytest.raises(ConfigError):
        make_binary_loss("triplet-mean", marginn=0.1)
    with pytest.raises(ConfigError):
        TripletLoss(mining="semi-hard")
    with pytest.raises(ConfigError):
        triplet_terms(torch.zeros(2, 2), mining="x")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- triplet-SN
def _sn_loop(S: torch.Tensor, margin: float, pmask: torch.Tensor | None, eps: float | None = None,
             tau: float | None = None) -> tuple[list[torch.Tensor], list[list[bool]]]:
    """Plain loops: switch variant when ``eps`` is given, softmax variant when ``tau`` is given."""
    B = S.shape[0]
    out, switched_out = [], []
    for X, P in ((S, pmask), (S.t(), None if pmask is None else pmask.t())):
        terms, switched = [], []
        for i in range(B):
            pos = float(X[i, i])
            negs = [float(X[i, j]) for j in range(B) if j != i and not (P is not None and bool(P[i, j]))]
            hinges = [max(0.0, margin + s - pos) for s in negs]
            if not negs:
                terms.append(0.0)
                switched.append(False)
                continue
            if eps is not None:
                use_mean = pos - max(negs) < eps
                switched.append(use_mean)
                terms.append(sum(hinges) / len(hinges) if use_mean else max(hinges))
            else:
                assert tau is not None
                ex = [math.exp((s - max(negs)) / tau) for s in negs]
                terms.append(sum(e / sum(ex) * h for e, h in zip(ex, hinges)))
                switched.append(False)
        out.append(torch.tensor(terms, dtype=torch.float64))
        switched_out.append(switched)
    return out, switched_out


def _sn_inputs(B: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + B)
    S = torch.rand(B, B, generator=g, dtype=torch.float64) * 0.6
    S += torch.eye(B, dtype=torch.float64) * 0.3  # positives lead most, but not all, hardest negatives
    pmask = torch.zeros(B, B, dtype=torch.bool)
    if B >= 6:
        pmask[0, 1] = pmask[1, 0] = True
        pmask[2, 3] = True
    if B == 2:
        pmask[0, 1] = True  # image 0 has no negative at all
    return S, pmask


@pytest.mark.parametrize("eps", [-0.1, 0.0, 0.05, 0.2])
@pytest.mark.parametrize("B", [1, 2, 6, 9])
def test_triplet_sn_switch_matches_loop(B: int, eps: float) -> None:
    S, pmask = _sn_inputs(B)
    for pm in (None, pmask):
        (ref_i2t, ref_t2i), (sw_i2t, sw_t2i) = _sn_loop(S, 0.2, pm, eps=eps)
        i2t, t2i = triplet_sn_switch_terms(S, margin=0.2, eps=eps, positive_mask=pm)
        torch.testing.assert_close(i2t, ref_i2t)
        torch.testing.assert_close(t2i, ref_t2i)
        got_i2t, got_t2i = triplet_sn_switched(S, eps=eps, positive_mask=pm)
        assert got_i2t.tolist() == sw_i2t and got_t2i.tolist() == sw_t2i


def test_triplet_sn_switch_uses_both_branches_and_limits() -> None:
    S, pmask = _sn_inputs(9)
    i2t, t2i = triplet_sn_switched(S, eps=0.05, positive_mask=pmask)
    both = torch.cat([i2t, t2i])
    assert both.any() and not both.all()  # the inputs exercise both branches
    for pm in (None, pmask):
        hard = triplet_terms(S, 0.2, "hardest", pm)
        mean = triplet_terms(S, 0.2, "mean", pm)
        torch.testing.assert_close(triplet_sn_switch_terms(S, 0.2, -math.inf, pm), hard)
        torch.testing.assert_close(triplet_sn_switch_terms(S, 0.2, math.inf, pm), mean)


@pytest.mark.parametrize("tau", [0.02, 0.1, 1.0])
@pytest.mark.parametrize("B", [1, 2, 6, 9])
def test_triplet_sn_softmax_matches_loop(B: int, tau: float) -> None:
    S, pmask = _sn_inputs(B)
    for pm in (None, pmask):
        (ref_i2t, ref_t2i), _ = _sn_loop(S, 0.2, pm, tau=tau)
        i2t, t2i = triplet_sn_softmax_terms(S, margin=0.2, tau=tau, positive_mask=pm)
        assert torch.isfinite(i2t).all() and torch.isfinite(t2i).all()
        torch.testing.assert_close(i2t, ref_i2t)
        torch.testing.assert_close(t2i, ref_t2i)


def test_triplet_sn_softmax_limits() -> None:
    S, pmask = _sn_inputs(9)  # continuous random values: no ties among negatives
    for pm in (None, pmask):
        torch.testing.assert_close(triplet_sn_softmax_terms(S, 0.2, math.inf, pm), triplet_terms(S, 0.2, "mean", pm))
        torch.testing.assert_close(triplet_sn_softmax_terms(S, 0.2, 1e-5, pm), triplet_terms(S, 0.2, "hardest", pm))


def test_triplet_sn_softmax_weights_carry_no_gradient() -> None:
    # row 0: negative 1 violates the margin, negative 2 does not. With the weights detached, S[0, 2] gets no
    # gradient from the i2t term (its hinge is 0); column 2's t2i term is made inactive by a large S[2, 2].
    S = torch.tensor([[0.5, 0.6, -0.5], [0.0, 0.9, -0.6], [0.0, 0.0, 1.0]], dtype=torch.float64,
                     requires_grad=True)
    i2t, _ = triplet_sn_softmax_terms(S, margin=0.2, tau=0.1)
    (grad,) = torch.autograd.grad(i2t[0], S)
    assert grad[0, 2] == 0.0
    w = math.exp(0.6 / 0.1) / (math.exp(0.6 / 0.1) + math.exp(-0.5 / 0.1))
    assert grad[0, 1].item() == pytest.approx(w) and grad[0, 0].item() == pytest.approx(-w)


def test_triplet_sn_no_negatives_and_dtype() -> None:
    S = torch.rand(2, 2, requires_grad=True)
    pmask = torch.ones(2, 2, dtype=torch.bool)  # nothing is a negative
    for name, kw in (("triplet-sn-switch", {"eps": 0.05}), ("triplet-sn-softmax", {"tau": 0.1})):
        loss = make_binary_loss(name, margin=0.2, **kw)(S, positive_mask=pmask)
        assert loss.item() == 0.0 and loss.requires_grad and loss.dtype == torch.float32
        (grad,) = torch.autograd.grad(loss, S)
        assert torch.isfinite(grad).all()


def test_binary_registry_hyper_parameters() -> None:
    assert binary_loss_params("triplet-hardest") == ("margin",)
    assert binary_loss_params("triplet-sn-switch") == ("margin", "eps")
    assert binary_loss_params("triplet-sn-softmax") == ("margin", "tau")
    sw = make_binary_loss("triplet-sn-switch", margin=0.1, eps=0.02)
    sm = make_binary_loss("triplet-sn-softmax", tau=0.5)
    assert isinstance(sw, TripletSNSwitchLoss) and (sw.margin, sw.eps) == (0.1, 0.02)
    assert isinstance(sm, TripletSNSoftmaxLoss) and (sm.margin, sm.tau) == (0.2, 0.5)
    with pytest.raises(ConfigError, match="'triplet-sn-switch'.*tau.*takes: margin, eps"):
        make_binary_loss("triplet-sn-switch", tau=0.1)
    with pytest.raises(ConfigError, match="eps"):
        make_binary_loss("triplet-sn-softmax", eps=0.1)
    with pytest.raises(ConfigError, match="eps"):
        make_binary_loss("triplet-hardest", eps=0.1)
    for name, kw in (("triplet-sn-softmax", {"tau": 0.0}), ("triplet-sn-softmax", {"tau": math.nan}),
                     ("triplet-sn-switch", {"eps": math.nan}), ("triplet-sn-switch", {"eps": True}),
                     ("triplet-sn-switch", {"margin": math.inf}), ("triplet-hardest", {"margin": "0.2"})):
        with pytest.raises(ConfigError):
            make_binary_loss(name, **kw)
    with pytest.raises(ConfigError, match="unknown binary loss 'x'.*triplet-sn-softmax, triplet-sn-switch"):
        binary_loss_params("x")


def test_binary_alias_is_one_line() -> None:
    assert BINARY_LOSSES["triplet-sn"].alias_of == "triplet-sn-switch"
    BINARY_LOSSES.alias("triplet-sn-test", "triplet-sn-softmax")
    try:
        loss = make_binary_loss("triplet-sn-test", tau=0.3)
        assert isinstance(loss, TripletSNSoftmaxLoss) and loss.tau == 0.3
        assert BINARY_LOSSES["triplet-sn-test"].alias_of == "triplet-sn-softmax"
        assert binary_loss_params("triplet-sn-test") == ("margin", "tau")
        with pytest.raises(ConfigError):
            make_binary_loss("triplet-sn-test", eps=0.1)
    finally:
        BINARY_LOSSES.unregister("triplet-sn-test")


def test_bcls_loss_accepts_sn_binary_losses() -> None:
    S, pmask = _sn_inputs(6)
    S = S.clone().requires_grad_(True)
    R = torch.eye(6, dtype=torch.float64)
    for name in ("triplet-sn-switch", "triplet-sn-softmax"):
        out = BCLSLoss(make_binary_loss(name), KendallLoss(), lam=0.5)(S, R, torch.eye(6, dtype=torch.bool), pmask)
        torch.testing.assert_close(out["binary"], make_binary_loss(name)(S, positive_mask=pmask))
        out["loss"].backward()
        assert torch.isfinite(S.grad).all()
        S.grad = None


# ----------------------------------------------------------------------------------------------- kendall
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("B", [1, 2, 5, 17])
def test_kendall_fast_equals_naive_and_loop(B: int, surrogate: str) -> None:
    for seed, tied in ((B, False), (B + 100, True)):
        S, R, M = _inputs(B, seed, tied)
        for window, gap, n_hard in itertools.product((1, 2, 3), (0.0, 0.1), (1, 2)):
            kw = dict(window=window, gap=gap, surrogate=surrogate, temperature=0.2, margin=0.1, n_hard=n_hard)
            for s, r, m in ((S, R, M), (S.t(), R.t(), M.t())):  # i2t and t2i
                fast_t, fast_v = kendall_swhs_terms(s, r, m, KendallParams(**kw))
                naive_t, naive_v = kendall_naive_terms(s, r, m, KendallParams(**kw))
                loop_t, loop_v = _loop_terms(s, r, m, **kw)
                assert torch.equal(fast_v, loop_v) and torch.equal(naive_v, loop_v), kw
                torch.testing.assert_close(fast_t, loop_t)
                torch.testing.assert_close(naive_t, loop_t)
            ref = _loop_loss(S, R, M, **kw)
            assert kendall_loss(S, R, M, KendallParams(**kw)).item() == pytest.approx(ref, abs=1e-12)
            assert kendall_naive(S, R, M, KendallParams(**kw)).item() == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("n_hard", [1, 2, 3])
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_kendall_gradients_fast_equal_naive(surrogate: str, n_hard: int) -> None:
    S0, R, M = _inputs(17, 7, tied=True)
    kw = dict(window=2, gap=0.1, surrogate=surrogate, temperature=0.3, margin=0.2, n_hard=n_hard)
    S1 = S0.clone().requires_grad_(True)
    S2 = S0.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(kendall_loss(S1, R, M, KendallParams(**kw)), S1)
    (g2,) = torch.autograd.grad(kendall_naive(S2, R, M, KendallParams(**kw)), S2)
    torch.testing.assert_close(g1, g2)
    assert g1.abs().sum() > 0


def test_kendall_zero_with_grad_when_nothing_valid() -> None:
    S = torch.randn(4, 4, requires_grad=True)
    R = torch.rand(4, 4)
    cases = [
        torch.zeros(4, 4, dtype=torch.bool),  # nothing known
        torch.eye(4, dtype=torch.bool),  # only the diagonal: one known candidate per query
    ]
    for M in cases:
        for fn in (kendall_loss, kendall_naive):
            loss = fn(S, R, M)
            assert loss.item() == 0.0 and loss.requires_grad
            (grad,) = torch.autograd.grad(loss, S)
            assert torch.equal(grad, torch.zeros_like(grad))
    # all labels equal: every pair is a tie, nothing to order
    loss, count = kendall_loss_with_count(S, torch.ones(4, 4), torch.ones(4, 4, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad and int(count) == 0


def test_kendall_hand_computed_example() -> None:
    S = torch.tensor([[0.9, 0.5, 0.6], [0.2, 0.8, 0.3], [0.4, 0.7, 1.0]], dtype=torch.float64)
    R = torch.tensor([[1.0, 0.5, 0.2], [0.3, 1.0, 0.3], [0.6, 0.1, 1.0]], dtype=torch.float64)
    M = torch.ones(3, 3, dtype=torch.bool)
    M[2, 1] = False
    kw = dict(window=1, gap=0.0, surrogate="hinge", margin=0.1)
    # i2t, query 0: order 0,1,2. anchor 0 -> partners {1,2}, hardest col 2: relu(.1+.6-.9)=0;
    #               anchor 1 -> partner 2: relu(.1+.6-.5)=0.2; anchor 2: none.
    # query 1: labels (.3, 1, .3) -> order 1,0,2 (tie by index). anchor 1 -> partners {0,2}, hardest col 2:
    #               relu(.1+.3-.8)=0; anchor 0 -> col 2 has the same label: no pair.
    # query 2: col 1 unknown; order 2,0. anchor 2 -> partner 0: relu(.1+.4-1.0)=0.
    terms, valid = kendall_swhs_terms(S, R, M, KendallParams(**kw))
    torch.testing.assert_close(terms, torch.tensor([[0, 0.2, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float64))
    assert valid.tolist() == [[True, True, False], [False, True, False], [False, False, True]]
    # t2i (rows of S.T): caption 0: order 0,2,1: anchor 0 -> hardest col 2 (.4): 0; anchor 2 -> col 1: relu(.1+.2-.4)=0
    #   caption 1: known cols 0,1: anchor 1 -> col 0: relu(.1+.5-.8)=0
    #   caption 2: order 2,1,0: anchor 2 -> hardest col 0 (.6): relu(.1+.6-1)=0; anchor 1 -> col 0: relu(.1+.6-.3)=0.4
    # total: 9 valid anchor terms, sum 0.6 -> 0.6 / 9
    loss, count = kendall_loss_with_count(S, R, M, KendallParams(**kw))
    assert int(count) == 9
    assert loss.item() == pytest.approx(0.6 / 9)
    # window 2: only pairs two ranks apart survive; all of them are satisfied (4 terms, all 0)
    loss2, count2 = kendall_loss_with_count(S, R, M, KendallParams(window=2, gap=0.0, surrogate="hinge", margin=0.1))
    assert int(count2) == 4 and loss2.item() == pytest.approx(0.0)
    # sigmoid: the single pair of i2t query 2 (anchor 2, partner 0) -> sigmoid((0.4 - 1.0) / 0.1)
    t, v = kendall_swhs_terms(S[2:], R[2:], M[2:], KendallParams(gap=0.0, surrogate="sigmoid", temperature=0.1))
    assert t[0, 2].item() == pytest.approx(1 / (1 + math.exp(6.0)))


def test_kendall_ignores_unknown_label_values() -> None:
    S, R, M = _inputs(9, 3, tied=False)
    R2 = torch.where(M, R, torch.full_like(R, 5.0))  # NaN vs 5.0 at unknown entries
    assert kendall_loss(S, R, M).item() == kendall_loss(S, R2, M).item()


def test_kendall_module_and_validation() -> None:
    S, R, M = _inputs(6, 1, tied=False)
    params = KendallParams(window=2, gap=0.05, surrogate="tanh", temperature=0.5, n_hard=2)
    mod = KendallLoss(params)
    assert mod(S, R, M).item() == kendall_loss(S, R, M, params).item()
    assert "window=2" in repr(mod) and mod.params is params
    bad = [
        dict(window=0), dict(window=1.5), dict(n_hard=0), dict(temperature=0.0), dict(gap=-0.1),
        dict(surrogate="logistic"),
    ]
    for kw in bad:
        with pytest.raises(ConfigError):
            KendallParams(**kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="takes a KendallParams"):
        KendallLoss({"window": 2})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- BCLS
class _Exploding(KendallLoss):
    def forward_with_count(self, S, R, label_mask):  # type: ignore[override]
        raise AssertionError("continuous loss computed although lam == 0")


def test_bcls_loss() -> None:
    S, R, M = _inputs(6, 2, tied=False)
    S = S.requires_grad_(True)
    pmask = torch.zeros(6, 6, dtype=torch.bool)
    pmask[0, 1] = pmask[1, 0] = True
    binary, cont = TripletLoss(0.2, "mean"), KendallLoss()
    out = BCLSLoss(binary, cont, lam=0.5)(S, R, M, positive_mask=pmask)
    torch.testing.assert_close(out["binary"], binary(S, positive_mask=pmask))
    c, n = cont.forward_with_count(S, R, M)
    torch.testing.assert_close(out["continuous"], c)
    torch.testing.assert_close(out["loss"], out["binary"] + 0.5 * c)
    assert int(out["valid_pairs"]) == int(n) > 0
    out["loss"].backward()
    assert S.grad is not None and torch.isfinite(S.grad).all()

    out0 = BCLSLoss(binary, _Exploding(), lam=0.0)(S, R, M)
    assert out0["continuous"].item() == 0.0 and int(out0["valid_pairs"]) == 0
    torch.testing.assert_close(out0["loss"], binary(S))
    with pytest.raises(ConfigError):
        BCLSLoss(binary, cont, lam=-1.0)
