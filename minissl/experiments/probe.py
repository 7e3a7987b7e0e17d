"""What the representation is good for: probes of an HLTM tree network and of a net trained on
``GaussianClusters`` (``minissl.probes``), on fixed training and test sets.

``hltm_probe``: every latent (or only the root) as the label, probed from the leaves, each
hidden layer and the output; beside it the Bayes accuracy given the latent's subtree leaves and
given all leaves, on the same test set. The sets are ``n`` samples each from streams 8
(training) and 9 (test) of the run's seed (``backend.derive_seed``). ``cluster_probe``: the
cluster id of ``GaussianClusters`` from one view per sample, same streams.
"""
from __future__ import annotations

import numpy as np

from .. import backend as B
from ..budget import SAMPLE_BYTES, Cost
from ..analysis.probes import (PROBES, bayes_accuracy, expected_bayes_accuracy, posterior_all_leaves,
                      probe, representations)

PROBE_TARGETS = ("off", "root", "all")


def probe_sets(sample, n, seed):
    """``(train, test)``: ``sample(n, rng)`` from streams 8 and 9 of ``seed``."""
    n = B.check_int("probe_samples", n, 10)
    return sample(n, B.derive_seed(seed, 8)), sample(n, B.derive_seed(seed, 9))


LINEAR_ITERATIONS = 100   # typical iterations of a logistic-regression probe (cost estimate)


def probe_cost(tree, sizes, n, targets="all"):
    """The ``limits.Cost`` of one ``hltm_probe`` of a tree network of widths ``sizes`` on
    ``n`` training and ``n`` test samples: memory of the samples (every node), every
    representation (float64, both sets), the posteriors and k-NN's distances; work of k-NN
    (``n² x width``), the linear probes (``LINEAR_ITERATIONS x n x width`` each) and the
    posterior passes."""
    T = tree.n_latents if targets == "all" else 1
    width = sum(sizes)
    memory = 2 * n * (tree.n_nodes * (SAMPLE_BYTES + 6 * 8) + 2 * width * 8) + 2 * n * n * 8
    work = n * n * width + T * LINEAR_ITERATIONS * n * width + 2 * n * tree.n_nodes * 20
    param = f"probe={targets!r}, probe_samples={n}"
    return Cost(((memory, "a probe", param),), ((work, "a probe", param),))


def hltm_probe(tree, net, seed, n=2000, targets="all", k=10):
    """Probe accuracies of ``net`` (a tree network of ``tree``); returns a dict:

    ``"latents"`` (T,) BFS indices probed (``targets`` "root": [0]; "all": every latent),
    ``"linear"``/``"knn"``: ``{representation: (T,) test accuracy}``,
    ``"bayes_subtree"``/``"bayes_all"``: (T,) accuracy on the test set of thresholding
    ``E[z | leaves under mu]`` / ``E[z | all leaves]`` at 1/2, and ``"expected_subtree"``/
    ``"expected_all"``: ``mean max(p, 1 - p)`` (the same, in expectation over the labels).
    """
    B.check_choice("probe targets", targets, PROBE_TARGETS[1:])
    (x_tr, z_tr), (x_te, z_te) = probe_sets(tree.sample, n, seed)
    cols = np.arange(tree.n_latents) if targets == "all" else np.array([0])
    R_tr, R_te = representations(net, x_tr), representations(net, x_te)
    out = {"latents": cols, "n": n}
    for kind in PROBES:
        out[kind] = {name: probe(R_tr[name], z_tr[:, cols], R_te[name], z_te[:, cols], kind,
                                 k=k) for name in R_tr}
    for name, post in (("subtree", tree.posterior_mean(x_te)),
                       ("all", posterior_all_leaves(tree, x_te))):
        out[f"bayes_{name}"] = bayes_accuracy(post[:, cols], z_te[:, cols])
        out[f"expected_{name}"] = expected_bayes_accuracy(post[:, cols])
    return out


def probe_rows(tree, result):
    """Table rows (header first): one per representation and Bayes ceiling, one column per
    tree depth (mean over that depth's probed latents) for both probes."""
    depths = sorted({int(tree.latent_depths[j]) for j in result["latents"]}, reverse=True)
    d_of = tree.latent_depths[result["latents"]]
    head = ["probe"] + [f"{kind} d{d}" for kind in PROBES for d in depths]
    rows = [head]
    for name in result["linear"]:
        rows.append([name] + [f"{result[kind][name][d_of == d].mean():.3f}"
                              for kind in PROBES for d in depths])
    for name in ("bayes_subtree", "bayes_all"):
        rows.append([name.replace("_", " | ")] +
                    [f"{result[name][d_of == d].mean():.3f}" for _ in PROBES for d in depths])
    return rows


def cluster_probe(source, net, seed, n=2000, k=10):
    """Linear and k-NN probes of the cluster id of a ``GaussianClusters`` ``source`` from each
    representation of ``net`` (one view per sample, ``source.sample``): ``{"linear": {name:
    accuracy}, "knn": {...}, "bayes", "chance": 1 / n_clusters}``. ``"bayes"``: the test
    accuracy of the nearest centre, the Bayes classifier of equally likely clusters with the
    same isotropic noise."""
    (x_tr, y_tr), (x_te, y_te) = probe_sets(source.sample, n, seed)
    R_tr, R_te = representations(net, x_tr), representations(net, x_te)
    out = {kind: {name: float(probe(R_tr[name], y_tr, R_te[name], y_te, kind, k=k)[0])
                  for name in R_tr} for kind in PROBES}
    d2 = ((x_te[:, None, :] - source.centers[None]) ** 2).sum(-1)      # (n, n_clusters)
    out["bayes"] = float((d2.argmin(axis=1) == y_te).mean())
    out["chance"] = 1.0 / source.n_clusters
    return out


def probe_view(tree, records, latent=0):
    """What the app's probe figure draws for the BFS ``latent`` (the root when that latent was
    not probed), from ``hltm_experiment`` records with ``"probe"``: ``{"label", "names",
    "untrained"/"trained": {"linear": [...], "knn": [...]}, "bayes_subtree", "bayes_all"}``
    (Bayes accuracies on the test set; "trained" only when the last record has a probe)."""
    latent = B.check_int("latent", latent, 0, tree.n_latents - 1)
    first = records[0].get("probe") if records else None
    if first is None:
        raise ValueError("records hold no probe (run with probe='root' or 'all')")
    j = int(np.flatnonzero(first["latents"] == latent)[0]) if latent in first["latents"] else 0
    mu = int(first["latents"][j])
    out = {"label": "the root" if mu == 0 else f"latent {mu} (depth {tree.latent_depths[mu]})",
           "names": list(first["linear"]), "bayes_subtree": float(first["bayes_subtree"][j]),
           "bayes_all": float(first["bayes_all"][j])}
    runs = [("untrained", first)]
    if len(records) > 1 and "probe" in records[-1]:
        runs.append(("trained", records[-1]["probe"]))
    for when, res in runs:
        out[when] = {kind: [float(res[kind][n][j]) for n in out["names"]] for kind in PROBES}
    return out
