"""What a representation is good for: linear and k-NN probes, and the Bayes ceiling of an HLTM.

A probe predicts a label y (binary latent, or cluster id) from features X, fit on a training
set and scored (accuracy) on a separate test set:

    linear   scikit-learn ``StandardScaler`` then ``LogisticRegression(C)`` (L2, lbfgs)
    knn      scikit-learn ``KNeighborsClassifier(k)`` on the raw features (Euclidean: the
             representation's own geometry, which the contrastive loss shapes)

The features (``representations``): the raw input ("leaves"), each hidden layer's activation
``f_l = relu(g_l)`` ("layer l", l = 1..L-1; in a tree network layer l holds the units of the
tree-depth-l latents) and the output ("output", ``net(x)``).

Bayes ceiling of an HLTM latent mu. No classifier of a set of leaves beats thresholding the
posterior of z_mu given those leaves at 1/2; its accuracy is ``E max(p, 1 - p)``.

    subtree  p = E[z_mu | leaves under mu] (``HLTM.posterior_mean``, the upward pass): the
             ceiling of anything computed from mu's subtree (mu's own units);
    all      p = E[z_mu | all leaves] (``posterior_all_leaves``, upward and downward passes):
             the ceiling of any representation (every layer is a function of all leaves).
             For the root both are the same; below it "all" is higher (leaves outside mu's
             subtree tell about mu through its parent).

``bayes_accuracy(p, z)`` scores the thresholded posterior on a sample (p = 1/2 counts 1/2);
``expected_bayes_accuracy(p)`` is ``mean max(p, 1 - p)``, its expectation given the leaves.
"""
from __future__ import annotations

import numpy as np

from .. import backend as B

PROBES = ("linear", "knn")


# ----------------------------------------------------------------------------- probes
def _labels(y, n, name):
    y = np.asarray(y)
    if y.ndim not in (1, 2) or len(y) != n:
        raise ValueError(f"{name} must be (n,) or (n, T) labels with n = {n} rows, got "
                         f"{y.shape}")
    return y.reshape(n, -1)                                        # (n, T)


def _features(X, name):
    X = np.asarray(B.to_numpy(X), dtype=np.float64)
    if X.ndim != 2 or len(X) < 1:
        raise ValueError(f"{name} must be an (n, d) array with n >= 1, got {X.shape}")
    return B.check_finite(name, X)


def probe(X_train, y_train, X_test, y_test, kind="linear", *, C=1.0, k=10):
    """Test accuracy of a ``kind`` probe ("linear" or "knn", module docstring) fit on
    ``(X_train, y_train)``: one value per label column. ``X`` (n, d); ``y`` (n,) or (n, T)
    (T targets probed separately from the same features; k-NN shares one neighbour search).
    Returns (T,) float64. A label constant on the training set is predicted as that constant
    by the linear probe (LogisticRegression needs two classes)."""
    B.require("sklearn", "probe")
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    B.check_choice("kind", kind, PROBES)
    Xtr, Xte = _features(X_train, "X_train"), _features(X_test, "X_test")
    Ytr, Yte = _labels(y_train, len(Xtr), "y_train"), _labels(y_test, len(Xte), "y_test")
    if Ytr.shape[1] != Yte.shape[1] or Xtr.shape[1] != Xte.shape[1]:
        raise ValueError("train and test sets must have the same features and label columns")
    C = B.check_real("C", C, 0, lo_open=True)
    k = B.check_int("k", k, 1, len(Xtr))
    if kind == "knn":                                              # one search, all columns
        pred = KNeighborsClassifier(n_neighbors=k).fit(
            Xtr, Ytr if Ytr.shape[1] > 1 else Ytr[:, 0]).predict(Xte)
        return (pred.reshape(Yte.shape) == Yte).mean(axis=0).astype(np.float64)
    out = np.empty(Ytr.shape[1])
    for t in range(Ytr.shape[1]):
        if len(np.unique(Ytr[:, t])) < 2:                          # nothing to learn
            out[t] = np.mean(Yte[:, t] == Ytr[0, t])
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        out[t] = model.fit(Xtr, Ytr[:, t]).score(Xte, Yte[:, t])
    return out


def representations(net, x):
    """``{"leaves": x, "layer 1": f_1, ..., "layer L-1": f_{L-1}, "output": net(x)}``: the
    input, every hidden layer's activation (after its ReLU) and the output, NumPy float64."""
    x = net.check_input(x)
    _, fs = net.passes(x)                                          # f_0 .. f_{L-1}
    out = {"leaves": B.to_numpy(x)}
    out.update({f"layer {l}": B.to_numpy(fs[l]) for l in range(1, net.depth)})
    out["output"] = B.to_numpy(net.forward(x))
    return {name: np.asarray(v, dtype=np.float64) for name, v in out.items()}


# ----------------------------------------------------------------------------- Bayes ceiling
def posterior_all_leaves(tree, x):
    """``E[z_mu | all leaves]`` for every latent, (n, n_latents) BFS, float64.

    Spins ``s = 2z - 1``. The upward pass (``HLTM.posterior_mean``) gives ``u_mu = E[s_mu |
    leaves under mu]``, so ``P(leaves under mu | s_mu) ∝ 1 + s_mu u_mu`` (uniform prior). The
    downward pass carries ``w_mu``, with ``P(leaves outside mu's subtree | s_mu) ∝ 1 + s_mu
    w_mu``: ``w_root = 0``; for a child nu of mu, the parent's belief without nu is
    ``b(s) ∝ (1 + s w_mu) prod_{siblings nu'} (1 + s rho_nu' u_nu')``, ``beta = (b(+) -
    b(-))/(b(+) + b(-))`` and ``w_nu = rho_nu beta``. Then ``E[s_mu | all leaves] = (u_mu +
    w_mu) / (1 + u_mu w_mu)``. Returns ``(1 + that)/2``.
    """
    x = np.asarray(B.to_numpy(x), dtype=np.float64)
    up = 2.0 * tree.posterior_mean(x) - 1.0                        # (n, n_latents), validates x
    n, c = len(x), tree.num_children
    u = tree.by_level(up.T) + [(2.0 * x - 1.0).T]                  # level k: (c**k, n)
    w, out = np.zeros((1, n)), []
    for k in range(tree.depth):
        den = 1.0 + u[k] * w
        out.append(np.where(den > 0, (u[k] + w) / np.where(den > 0, den, 1.0), 0.0))
        t = (tree.level_rho(k + 1)[:, None] * u[k + 1]).reshape(-1, c, n)  # (c**k, c, n)
        beta = np.empty_like(t)
        for j in range(c):
            others = np.delete(t, j, axis=1)                       # the siblings of child j
            bp = (1.0 + w) * np.prod(1.0 + others, axis=1)
            bm = (1.0 - w) * np.prod(1.0 - others, axis=1)
            beta[:, j] = np.where(bp + bm > 0, (bp - bm) / np.where(bp + bm > 0, bp + bm, 1),
                                  0.0)
        w = tree.level_rho(k + 1)[:, None] * beta.reshape(-1, n)   # (c**(k+1), n)
    return (1.0 + np.concatenate(out).T) / 2.0


def bayes_accuracy(posterior, z):
    """Accuracy of predicting ``z`` (n, T) in {0, 1} by ``posterior > 1/2`` (a posterior of
    exactly 1/2 counts 1/2), per column: (T,)."""
    p, z = np.asarray(posterior, dtype=np.float64), np.asarray(z, dtype=np.float64)
    if p.shape != z.shape:
        raise ValueError(f"posterior and z must have one shape, got {p.shape} and {z.shape}")
    hit = np.where(p == 0.5, 0.5, ((p > 0.5) == (z > 0.5)).astype(float))
    return hit.mean(axis=0)


def expected_bayes_accuracy(posterior):
    """``mean_n max(p, 1 - p)`` per column: the Bayes accuracy given the conditioning leaves,
    in expectation over the labels (the sample's leaves fixed)."""
    p = np.asarray(posterior, dtype=np.float64)
    return np.maximum(p, 1.0 - p).mean(axis=0)
