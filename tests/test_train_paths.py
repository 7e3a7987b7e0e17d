"""Which path ``train`` takes: the compiled epoch (``kernels.tree.TreeEpoch``), a compiled
step (``kernels.tree.TreeStep`` or ``kernels.mlp.FusedStep``) or the NumPy reference
(``train.loss_and_grads``), for a handful of (net, source, config) combinations. Each
compiled path says itself whether it applies (``applies``); this table pins the choices."""
import importlib

import numpy as np
import pytest

import minissl
from minissl import ReLUNet, train
from minissl.data import GaussianClusters
from minissl.hltm import HLTM
from minissl.kernels import mlp
from minissl.kernels import tree as KT

T = importlib.import_module("minissl.train")    # the module (minissl.train is the function)


@pytest.fixture
def taken(monkeypatch):
    """The set of paths the training steps went through (recorded by wrapping each)."""
    seen = set()

    def spy(owner, name, label):
        inner = getattr(owner, name)

        def wrapped(*a, **k):
            seen.add(label)
            return inner(*a, **k)
        monkeypatch.setattr(owner, name, wrapped)
    spy(T, "loss_and_grads", "reference")
    spy(KT.TreeEpoch, "run", "epoch")
    spy(KT.TreeStep, "__call__", "tree step")
    spy(mlp.FusedStep, "__call__", "fused step")
    return seen


def tree_run(backend="numba", hid=3, **kw):
    tree = HLTM(depth=3, num_children=2, seed=1)
    net_kw = {k: kw.pop(k) for k in ("bias", "normalize", "batchnorm") if k in kw}
    if net_kw.get("normalize"):
        net_kw["norm_eps"] = 1e-4
    return minissl.tree_network(tree, hid, seed=2, backend=backend, **net_kw), tree, kw


def dense_run(sizes=(5, 6, 3), backend="numba", **kw):
    net_kw = {k: kw.pop(k) for k in ("bias", "batchnorm") if k in kw}
    return ReLUNet(list(sizes), seed=1, backend=backend, **net_kw), \
        GaussianClusters(dim=sizes[0], seed=0), kw


def random_mask_run(**kw):
    tree = HLTM(depth=3, num_children=2, seed=1)
    sizes = [tree.dim, 6, 5, 3]
    g = np.random.default_rng(0)
    masks = [(g.random((b, a)) < 0.5).astype(float) for a, b in zip(sizes[:-1], sizes[1:])]
    for m in masks:
        m[:, 0] = 1
    return ReLUNet(sizes, masks=masks, seed=1, backend="numba"), tree, kw


CASES = [  # (builder, its keywords incl. config overrides, the paths taken)
    (tree_run, dict(sampler="compiled"), {"epoch"}),
    (tree_run, dict(sampler="compiled", bias=True, normalize=True, loss="ref_nce"), {"epoch"}),
    (tree_run, dict(), {"epoch"}),                                     # sampler "auto"
    (tree_run, dict(sampler="numpy"), {"tree step"}),
    (tree_run, dict(sampler="compiled", frozen=(0,)), {"tree step"}),
    (tree_run, dict(sampler="compiled", optimizer="adam"), {"tree step"}),
    (tree_run, dict(sampler="compiled", update="covariance"), {"tree step"}),
    (tree_run, dict(sampler="compiled", negatives="in_batch"), {"reference"}),
    (tree_run, dict(sampler="compiled", batchnorm={"mean": "normal"}), {"reference"}),
    (tree_run, dict(backend="numpy"), {"reference"}),
    (random_mask_run, dict(sampler="compiled"), {"fused step"}),       # not a tree's masks
    (dense_run, dict(), {"fused step"}),
    (dense_run, dict(bias=True), {"reference"}),                       # biases, not a tree
    (dense_run, dict(batchnorm={"mean": "normal"}), {"reference"}),
    (dense_run, dict(negatives="in_batch"), {"reference"}),
    (dense_run, dict(sizes=(4, 1 << 10, 1 << 9)), {"reference"}),     # too many weights
    (dense_run, dict(sizes=(32, 64, 32)), {"reference"}),              # dense: BLAS pays
]


@pytest.mark.parametrize("build, kw, want", CASES)
def test_train_takes_the_expected_path(build, kw, want, taken):
    net, source, cfg = build(**dict(kw))
    train(net, source, steps=2, batch_size=4, lr=0.01, **cfg)
    assert taken == want
