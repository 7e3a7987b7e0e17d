"""Print README's table of what is in minissl/: the core module by module in reading order,
then the edge package by package, with line counts (``wc -l``) and the totals.

    python docs/tools/module_table.py            # the Markdown README shows
tests/test_readme.py checks that README holds exactly this output.
"""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKG = ROOT / "minissl"
CORE = [  # (files, what they hold), in the reading order of docs/design.md
    (["layers.py"], "the ops with forward and backward side by side: `Linear` (masked), `ReLU`, "
                    "`L2Normalize`, `BatchNorm`, `WeightNormLinear`, `SymmetricThreshold`, "
                    "`Sequential`"),
    (["nets.py"], "`Network`, `ReLUNet` (a `Sequential`), Jacobians, `state()`, `tree_network`"),
    (["losses.py"], "the losses as functions of `(r_pos, r_neg)` with their partials, chains to "
                    "the embeddings, SimCLR, SupCon, the BYOL loss, softmax cross-entropy"),
    (["data.py"], "the data-source protocol, `GaussianClusters`, `GaussianViews`"),
    (["hltm.py"], "the HLTM: sampling, positive pairs, exact posterior, tree-network masks"),
    (["optim.py"], "SGD, Adam, EMA, `History`, the record/callback/stop convention"),
    (["train.py"], "the one training loop: gradient or covariance-operator updates, given / "
                   "in-batch / supervised negatives, SGD or Adam"),
    (["covariance.py"], "`K_l`, `Kbar_l`, `OP_l` (plain and ξ-weighted), matrix-free products, "
                        "every layer's update from one pass, Lanczos spectrum, pair weights"),
    (["metrics.py"], "normalized correlation and its exact ceiling, collapse diagnostics, "
                     "eigen-alignment"),
    (["byol.py"], "BYOL: predictor, EMA target, BN, DirectPred, the authors' preset"),
    (["linear_byol.py"], "linear BYOL: the gradient-flow ODE, Euler and SGD simulations"),
    (["decoupling.py"], "Wen & Li's sparse-coding data, closed-form view correlations, feature "
                        "metrics"),
    (["backend.py", "gradcheck.py", "__init__.py", "__main__.py"],
     "array namespace (NumPy / CuPy), seeds, BLAS threads; central finite differences; the "
     "public names"),
]
EDGE = [  # (package, what it holds)
    ("kernels", "Numba twins of the hot paths and the one dispatch table `twin()`"),
    ("budget", "memory and work limits (`MINISSL_MAX_MEMORY`, `MINISSL_MAX_WORK`, `limits=`), "
               "`Cost`, the estimators of every request"),
    ("checks", "the validators, settings declared once (`setting`), optional packages "
               "(`require`)"),
    ("io", "networks to and from files: atomic, bounded, pickle-free, every state checked"),
    ("datasets", "real data: digits, MNIST-1D, CIFAR-10 batches, image folders; augmentations; "
                 "`RealData`"),
    ("analysis", "linear and k-NN probes (scikit-learn), selectivity statistics"),
    ("figures", "Matplotlib `Figure` builders"),
    ("experiments", "config dataclasses and runners for the CLI, the app and the docs"),
    ("cli", "`python -m minissl`: argparse over the experiments"),
]


def lines(paths):
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)


def table():
    core = sum(lines([PKG / f for f in files]) for files, _ in CORE)
    edge = sum(lines(sorted((PKG / p).glob("*.py"))) for p, _ in EDGE)
    out = [f"{core + edge:,} lines of Python: the core, {core:,} (`cat minissl/*.py | wc -l`), "
           f"and the edge, {edge:,} (`cat minissl/*/*.py | wc -l`); printed by "
           f"`python docs/tools/module_table.py`.", "",
           "| core (read in this order) | lines | what it holds |", "|---|---|---|"]
    out += [f"| {', '.join(f'`{f}`' for f in files)} | {lines([PKG / f for f in files])} | {what} |"
            for files, what in CORE]
    out += ["", "| edge (skip unless you need it) | lines | what it holds |", "|---|---|---|"]
    out += [f"| `{p}/` | {lines(sorted((PKG / p).glob('*.py')))} | {what} |" for p, what in EDGE]
    return "\n".join(out)


if __name__ == "__main__":
    print(table())
