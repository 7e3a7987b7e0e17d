"""Notebook 5 of the minissl course: feature decoupling (source of
05_feature_decoupling.ipynb). Build it with ``python docs/course/refresh.py 05``.
"""
# %% [markdown]
# # 5 · Feature decoupling
#
# *minissl course, notebook 5 of 6 —
# [previous: why BYOL does not collapse](04_why_byol_does_not_collapse.ipynb) ·
# [course index](README.md) ·
# [next: real data](06_real_data.ipynb)*
#
# Notebooks 2 and 3 asked *how* contrastive training grows the weights. This one asks
# *which features* it learns when the data offer two kinds. Wen & Li (ICML 2021, *Toward
# understanding the feature learning process of self-supervised contrastive learning*)
# study data made of **sparse** features, each present in few samples (the ones worth
# learning), buried in **dense** ones, present in every sample (spurious, like background
# texture). Their answer: a network trained without augmentation learns the dense
# features; augmentation helps when it **decouples** the two, keeping the sparse features
# correlated between the two views of a sample while decorrelating the dense ones. This
# notebook:
#
# 1. samples the data model $x = Mz + \xi$;
# 2. computes what each augmentation does to the views' correlation, in closed form, and
#    measures it;
# 3. writes the contrastive loss and its gradient in NumPy, checks them against `minissl`,
#    and builds the network (weight-normalised neurons with a learned symmetric threshold);
# 4. trains without augmentation, with masks and with complementary masks, and looks at
#    what each neuron learned;
# 5. shows where the principle fails: low-rank dense features;
# 6. adds SupCon, a loss of the same family, in one paragraph.
#
# Everything uses `minissl`'s public API, NumPy and matplotlib, and takes about 20 seconds
# of CPU time. `docs/decoupling.md` has the full-size results (d = 32, d1 = 128, 64 neurons).

# %%
from dataclasses import replace

import numpy as np
import matplotlib.pyplot as plt

import minissl
from minissl import decoupling
from minissl.experiments import DecouplingConfig, decoupling_experiment

plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.4, 3.0), "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3})
np.set_printoptions(precision=3, suppress=True)
SIZE = dict(d=16, d1=64, k=2, dense_rank=40)           # the app's small setting

# %% [markdown]
# ## 1. Sparse and dense features
#
# A sample of width $d_1$ is
#
# $$x = M z + \xi ,\qquad z \in \{-1, 0, 1\}^d,\quad P(z_j \ne 0) = k/d,\qquad
# \xi = \sigma P g,\quad g \sim \mathcal N(0, I_r).$$
#
# * $M$ ($d_1 \times d$) has orthonormal columns, the **sparse features**. They are
#   *delocalised*: each is spread over all coordinates (the first $d$ columns of a random
#   orthogonal matrix), not one pixel each.
# * $z$ switches on about $k$ of them per sample, each with a random sign.
# * $\xi$ is the **dense** part: Gaussian in an $r$-dimensional subspace $P$ orthogonal to
#   $M$, present in every sample, with $\sigma^2 = e\, k / r$ ($e$ = `dense_energy`) so
#   that $\mathbb E\|\xi\|^2 = e\, \mathbb E\|Mz\|^2$.
#
# The covariance is $C = \mathbb E\, x x^\top = \frac kd M M^\top + \sigma^2 P P^\top$: each
# sparse direction carries variance $k/d$, each dense one $\sigma^2$. `minissl.SparseCoding`
# is this model; here $d = 16$ features in $d_1 = 64$ coordinates, $k = 2$, dense rank
# $r = 40$, equal energies.

# %%
src = minissl.SparseCoding(**SIZE, augmentation="none", seed=0)
x, z, xi = src.sample(20000, rng=1, return_parts=True)
print(src)
print(f"active features per sample {(z != 0).sum(1).mean():.2f}   "
      f"E||Mz||^2 {((z @ src.M.T) ** 2).sum(1).mean():.2f}   E||xi||^2 {(xi ** 2).sum(1).mean():.2f}")
print(f"largest |M_ij| {np.abs(src.M).max():.2f} (a coordinate-aligned feature: 1)   "
      f"max |P^T M| {np.abs(src.P.T @ src.M).max():.0e}")
print("eigenvalues of C, counted:", {float(v): int(n) for v, n in
                                     zip(*np.unique(np.linalg.eigvalsh(src.covariance).round(4) + 0.0,
                                                    return_counts=True))})

# %%
i = np.flatnonzero((z != 0).sum(1) == 2)[0]                 # a sample with 2 active features
fig, (a1, a2) = plt.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
a1.plot(x[i], "k", lw=1.2, label="x")
a1.plot(x[i] - xi[i], "C0", lw=0.9, label="Mz (sparse part)")
a1.plot(xi[i], "C3", lw=0.9, label="ξ (dense part)")
a1.set(xlabel="coordinate", title=f"one sample (features {np.flatnonzero(z[i])} active)")
a1.legend(fontsize=7)
bins = np.linspace(-2, 2, 41)
a2.hist((x @ src.M).ravel(), bins, density=True, alpha=0.6, label="$M^\\top x$ (sparse dirs)")
a2.hist((x @ src.P).ravel(), bins, density=True, alpha=0.6, color="C3",
        label="$P^\\top x$ (dense dirs)")
a2.set(yscale="log", xlabel="projection", title="x projected on the features")
a2.legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# **What to notice.** In coordinates nothing is sparse: both parts look like noise, and no
# entry of $M$ exceeds 0.42. Only along the right directions does the difference appear:
# $M^\top x$ is exactly $z$ (spikes at $-1, 0, 1$, mostly 0), $P^\top x$ is a Gaussian.
# The covariance has 16 eigenvalues $k/d = 0.125$, 40 at $\sigma^2 = 0.05$ and 8 zeros: a
# linear method (PCA) would find the sparse subspace, but not the individual features in
# it; any rotation of $M$ has the same covariance.

# %% [markdown]
# ## 2. What an augmentation does to the views' correlation
#
# Both views of a sample share its $z$ *and* its $\xi$; without augmentation they are
# identical, and every feature is perfectly correlated between them. The augmentations
# (`augmentation=` in `SparseCoding`):
#
# * **mask**: each view is $D x / p$, $D$ a random diagonal 0/1 matrix keeping each
#   coordinate with probability $p$;
# * **complementary masks**: $x^+ = 2Dx$, $x^{++} = 2(I - D)x$ with $D$ Bernoulli(½): the
#   views split the coordinates between them;
# * **noise**: each view is $x + s\varepsilon$ (with `noise_scale="relative"` the noise
#   energy is $s^2\, \mathbb E\|x\|^2$).
#
# Along a unit direction $v$, with $a = v^\top C v$ (the variance along $v$) and
# $b = \sum_i v_i^2 C_{ii}$ (its diagonal part), the correlation of the two views'
# projections $u^+ = v^\top x^+$ and $u^{++} = v^\top x^{++}$ has a closed form. For
# complementary masks, $u^+ = 2\sum_i v_i D_i x_i$ and $u^{++} = 2\sum_i v_i (1 - D_i) x_i$
# with $D_i$ independent of $x$:
#
# * $\mathbb E[D_i (1 - D_j)] = \tfrac14$ for $i \ne j$ and $0$ for $i = j$ (a coordinate
#   goes to one view only), so $\mathbb E[u^+ u^{++}] = \sum_{i \ne j} v_i v_j C_{ij} = a - b$;
# * $\mathbb E[D_i D_j] = \tfrac14$ for $i \ne j$ and $\tfrac12$ for $i = j$, so
#   $\mathbb E[(u^+)^2] = (a - b) + 2b = a + b$, and the same for $u^{++}$;
# * hence $\rho = \mathbb E[u^+ u^{++}] / \sqrt{\mathbb E[(u^+)^2]\, \mathbb E[(u^{++})^2]}
#   = (a - b)/(a + b)$.
#
# The same bookkeeping gives the other rows of the table (`decoupling.view_correlation`):
#
# | augmentation | $\rho$ |
# |---|---|
# | complementary masks | $(a - b) / (a + b)$ |
# | masks, keep $p$ | $a / \big(a + b\,(1 - p)/p\big)$ |
# | noise, per-coordinate std $s$ | $a / (a + s^2)$ |
# | none | 1 |
#
# For a delocalised $v$, $b \approx \mathrm{tr}(C)/d_1$, the energy per coordinate. A
# direction survives masking only if its variance $a$ is large against that. Here a sparse
# direction has $a = 0.125$, a dense one $0.05$, and $\mathrm{tr}(C)/d_1 = 0.0625$: masks
# should hurt the dense features more. Here is the complementary-mask formula, averaged over
# the sparse directions (the columns of $M$) and the dense ones (the columns of $P$),
# against `decoupling.closed_form_correlations`:

# %%
C = src.covariance


def rho_complementary(v):
    """(a - b) / (a + b) along the unit direction v."""
    a = v @ C @ v                                   # the variance along v
    b = (v ** 2 * np.diag(C)).sum()                 # its diagonal part
    return (a - b) / (a + b)


v = src.M[:, 0]
print(f"sparse direction M_0: a = {v @ C @ v:.4f}, b = {(v ** 2 * np.diag(C)).sum():.4f};"
      f"  tr(C)/d1 = {np.trace(C) / src.d1:.4f}")
by_hand = {"sparse": np.mean([rho_complementary(v) for v in src.M.T]),
           "dense": np.mean([rho_complementary(v) for v in src.P.T])}
src_c = minissl.SparseCoding(**SIZE, augmentation="complementary", seed=0)
lib = decoupling.closed_form_correlations(src_c)
for key in by_hand:
    print(f"rho_{key}: by hand {by_hand[key]:.6f}, minissl {lib[key]:.6f}, "
          f"difference {abs(by_hand[key] - lib[key]):.0e}")

# %% [markdown]
# From here on `closed_form_correlations(source)` gives these means for every augmentation,
# and `measured_correlations(source, n, rng)` estimates the same from $n$ pairs of views.
# The **gap** $\rho_{sparse} - \rho_{dense}$ says how much more the augmentation keeps of the
# sparse features than of the dense ones.

# %%
augs = {"none": dict(augmentation="none"),
        "noise s=0.1": dict(augmentation="noise", s=0.1),
        "noise rel. s=1": dict(augmentation="noise", s=1.0, noise_scale="relative"),
        "mask p=0.5": dict(augmentation="mask", p=0.5),
        "mask p=0.3": dict(augmentation="mask", p=0.3),
        "complementary": dict(augmentation="complementary")}
print(f"{'':15s} rho_sparse  measured      rho_dense  measured       gap")
rho = {}
for name, kw in augs.items():
    s = minissl.SparseCoding(**SIZE, **kw, seed=0)
    cf = decoupling.closed_form_correlations(s)
    me = decoupling.measured_correlations(s, 20000, rng=3)
    rho[name] = (cf, me)
    print(f"{name:15s} {cf['sparse']:9.3f}  {me['sparse']:6.3f}±{me['sparse_se']:.3f}  "
          f"{cf['dense']:9.3f}  {me['dense']:6.3f}±{me['dense_se']:.3f}  {cf['sparse'] - cf['dense']:8.3f}")

# %%
fig, ax = plt.subplots(figsize=(6.4, 2.8))
pos = np.arange(len(augs))
for off, key, col in ((-0.2, "sparse", "C0"), (0.2, "dense", "C3")):
    ax.bar(pos + off, [rho[n][0][key] for n in augs], 0.4, color=col, alpha=0.7,
           label=f"ρ {key} (closed form)")
    ax.errorbar(pos + off, [rho[n][1][key] for n in augs],
                yerr=[3 * rho[n][1][key + "_se"] for n in augs], fmt="k.", ms=4)
ax.axhline(0, color="k", lw=0.6)
ax.set_xticks(pos, list(augs), fontsize=8)
ax.set(ylabel="correlation between views", title="bars: closed form; dots: measured (±3 s.e.)",
       ylim=(-0.2, 1.3))
ax.legend(fontsize=7, loc="upper right", ncol=2)
fig.tight_layout()

# %% [markdown]
# **What to notice.** The closed forms match the measurement to the third decimal. Every
# augmentation lowers the dense correlation more than the sparse one, but by very different
# margins: noise of std 0.1 barely separates them (gap 0.09), noise at the data's scale and
# masks by about 0.2, and **complementary masks** by 0.43, the only one that makes the dense
# part *anti*-correlated ($\rho_{dense} = -0.11$) while the sparse part keeps $\rho = 0.32$.
# Two views that share nothing dense but still share their sparse features: that is the
# decoupling.

# %% [markdown]
# ## 3. The loss, the network and its training
#
# **The loss.** The two views of $N$ samples are embedded into the rows of
# $Z = [z^{+}_1 \dots z^{+}_N;\ z^{++}_1 \dots z^{++}_N]$, $B = 2N$ unit vectors. Row $i$'s
# positive is its partner $i' = (i + N) \bmod B$, the other view of the same sample; every
# other row is one of its $B - 2$ negatives (the SimCLR arrangement). With
# $r_{ij} = \tfrac12 \|z_i - z_j\|^2$, InfoNCE (notebook 1) for anchor $i$ is
#
# $$L_i = -\tau \log \frac{e^{-r_{ii'}/\tau}}{\sum_{j \ne i} e^{-r_{ij}/\tau}}
# = r_{ii'} + \tau \log \sum_{j \ne i} e^{-r_{ij}/\tau},\qquad
# \frac{\partial L_i}{\partial r_{ij}} = \mathbb 1[j = i'] - q_{ij},\quad
# q_{ij} = \frac{e^{-r_{ij}/\tau}}{\sum_{a \ne i} e^{-r_{ia}/\tau}} ,$$
#
# and the batch loss is $L = \frac1B \sum_i L_i$. Write $G_{ij} = \frac1B\, \partial L_i /
# \partial r_{ij}$. Since $\partial r_{ij}/\partial z_i = z_i - z_j = -\partial r_{ij}/
# \partial z_j$, the chain rule collects, for each row $m$, every pair it is in:
#
# $$\frac{\partial L}{\partial z_m} = \sum_j (G_{mj} + G_{jm})\,(z_m - z_j) .$$

# %%
def simclr_infonce(Z, tau):
    """InfoNCE in the SimCLR arrangement, from its definition: the mean loss and dL/dZ."""
    B = len(Z)
    i, partner = np.arange(B), (np.arange(B) + B // 2) % B
    R = 0.5 * ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=2)   # r_ij, (B, B)
    E = np.exp(-R / tau)                          # unit rows: r <= 2, no overflow at tau 0.2
    E[i, i] = 0                                   # the sums run over j != i
    Q = E / E.sum(axis=1, keepdims=True)          # q_ij
    L = R[i, partner] + tau * np.log(E.sum(axis=1))                 # L_i, (B,)
    G = -Q
    G[i, partner] += 1                            # dL_i / dr_ij
    S = (G + G.T) / B
    dZ = S.sum(axis=1, keepdims=True) * Z - S @ Z                   # sum_j S_mj (z_m - z_j)
    return L.mean(), dZ

# %% [markdown]
# **The network.** One layer of $m = 32$ neurons, with unit weight vectors and a learned
# threshold $b_i \ge 0$ that acts on both signs (Wen & Li's neuron), then an L2
# normalisation:
#
# $$s = W x,\ \ W_i = V_i / \|V_i\| ,\qquad h_i = \mathrm{sign}(s_i)\,\max(|s_i| - b_i, 0),
# \qquad z = h / \|h\| .$$
#
# With $b_i = 0$ a neuron is linear. A neuron with $w_i = M_j$ sees $\langle w_i, x\rangle
# = z_j$ exactly on a clean sample ($M$'s columns are orthonormal and $P \perp M$), so a
# threshold $0 < b_i < 1$ turns it into a clean detector of feature $j$. The layers are
# `minissl.WeightNormLinear`, `minissl.SymmetricThreshold` (whose `project()` keeps
# $b \ge 0$) and `minissl.L2Normalize`, stacked in a `minissl.Network`. Training is
# `minissl.train(..., negatives="in_batch", optimizer="adam")`: each step draws two views of
# $N = 128$ samples, embeds them, takes the loss above (τ = 0.2) and its gradient, backward
# through the layers, an Adam step (lr 3e-3) and `project()`. Our function should agree with
# `minissl.simclr_loss`, and with the loss `minissl.train` records at its first step (its
# first batch is `src.views(128, 2, rng)` with `rng` seeded by its `seed`):

# %%
TRAIN = dict(loss="infonce", tau=0.2, lr=3e-3, optimizer="adam", negatives="in_batch",
             batch_size=128, seed=2)


def make_net(src, width=32):
    return minissl.Network([minissl.WeightNormLinear(src.dim, width, rng=1),
                            minissl.SymmetricThreshold(width), minissl.L2Normalize()],
                           [src.dim, width])


net = make_net(src_c)                                          # src_c: complementary masks
X = src_c.views(128, 2, np.random.default_rng(2))              # (N, 2, d1): two views each
Z = net.forward(np.concatenate([X[:, 0], X[:, 1]]))            # (2N, m)
L, dZ = simclr_infonce(Z, tau=0.2)
L_lib, (dz1, dz2) = minissl.simclr_loss(Z[:128], Z[128:], "infonce", tau=0.2)
first = minissl.train(net, src_c, steps=1, **TRAIN)            # a History: one record per step
print(f"loss: by hand {L:.12f}, minissl.simclr_loss {L_lib:.12f}")
print(f"max |dL/dZ by hand - minissl| = {np.abs(dZ - np.concatenate([dz1, dz2])).max():.0e}")
print(f"first step of minissl.train:   {first['loss'][0]:.12f}")

# %% [markdown]
# Now the three runs of the next section, 600 steps each, from the same initial weights
# (`rng=1`) and the same data stream (`seed=2`), recording the neurons every 25 steps:

# %%
def fit(augmentation, steps=600):
    """Train on SparseCoding data with one augmentation; returns the net, the data model and
    the neurons' metrics (decoupling.feature_metrics) every 25 steps."""
    src = minissl.SparseCoding(**SIZE, **augmentation, seed=0)
    net, hist = make_net(src), []

    def record(rec):
        metrics = decoupling.feature_metrics(net.layers[0].W, src.M, src.P)
        hist.append({"step": rec["step"], **metrics})
    minissl.train(net, src, steps=steps, log_every=25, callback=record, **TRAIN)
    return net, src, hist


runs = {name: fit(augs[name]) for name in ("none", "mask p=0.5", "complementary")}

# %% [markdown]
# What we measure, per neuron $i$ with unit weight $w_i$ (`decoupling.feature_metrics`):
#
# * **sparse alignment** $\max_j |M_j^\top w_i|$: 1 when the neuron *is* one sparse feature;
# * **dense fraction** $\|P^\top w_i\|^2$: the share of its weight in the dense subspace;
# * per sparse feature $j$, its **coverage** $\max_i |M_j^\top w_i|$: how well the best
#   neuron captures it (1: some neuron is that feature).

# %% [markdown]
# ## 4. No augmentation, masks, complementary masks
#
# The same data model and the same initial weights; only the augmentation differs.

# %%
fig, axes = plt.subplots(1, 3, figsize=(8.4, 2.7), sharey=True)
for ax, key, title in zip(axes, ("alignment", "dense_fraction", "coverage"),
                          ("sparse alignment (mean)", "dense fraction (mean)", "coverage (mean)")):
    for c, (name, (_, _, hist)) in enumerate(runs.items()):
        ax.plot([h["step"] for h in hist], [h[key] for h in hist],
                color=f"C{c}", label=f"{name}  (gap {rho[name][0]['sparse'] - rho[name][0]['dense']:.2f})")
    ax.set(xlabel="step", title=title, ylim=(0, 1.02))
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7)
fig.tight_layout(rect=(0, 0.08, 1, 1))                # room for the legend below the panels
print(f"{'':14s} alignment  #>0.9  dense frac  coverage  #cov>0.9  b mean")
for name, (net, s, hist) in runs.items():
    r = hist[-1]
    print(f"{name:14s} {r['alignment']:9.2f} {r['aligned']:6d} {r['dense_fraction']:11.2f} "
          f"{r['coverage']:9.2f} {r['covered']:9d} {net.layers[1].b.mean():7.3f}")

# %% [markdown]
# Now each neuron. Below, one row per neuron: its squared projections $(M_j^\top w_i)^2$ on
# the 16 sparse features, then (last column, after the gap) its dense fraction
# $\|P^\top w_i\|^2$. A row sums to at most 1; neurons are sorted by their best feature.

# %%
fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.6), sharey=True)
for ax, (name, (net, s, _)) in zip(axes, runs.items()):
    W = net.layers[0].W
    proj = (W @ s.M) ** 2                                           # (32, 16)
    dense = decoupling.dense_fraction(W, s.P)                       # (32,)
    order = np.lexsort((-proj.max(1), proj.argmax(1)))
    img = np.hstack([proj, np.full((len(W), 1), np.nan), dense[:, None]])[order]
    im = ax.imshow(img, vmin=0, vmax=1, cmap="magma", aspect="auto", interpolation="nearest")
    ax.set_xticks([0, 5, 10, 15, 17], ["1", "6", "11", "16", "P"])
    ax.set(xlabel="sparse feature j  |  dense", title=name)
    ax.grid(False)
axes[0].set_ylabel("neuron (sorted)")
cbar = fig.colorbar(im, ax=axes, shrink=0.8, label="squared projection")

# %% [markdown]
# **What to notice.** Without augmentation the neurons go into the dense subspace (dense
# fraction 0.78, last column bright) and no feature is found; the threshold stays near 0, so
# the neurons are linear. With complementary masks the picture turns over: 22 of 32 neurons
# are one sparse feature each (alignment > 0.9, a single bright cell in their row), every
# one of the 16 features is covered (from step 450 on), and the thresholds have grown to
# about 0.45, between the 0 and the ±1 of a feature. Independent masks (p = 0.5) leave the
# neurons in between after 600 steps (alignment 0.42, dense fraction 0.43, one feature
# covered): their gap (0.21) is half the complementary one, and they find the features much
# later (all 16 covered at step 2,500 of a longer run, `fit(augs["mask p=0.5"], steps=3000)`).
# More training is not always better: over 3,000 steps the complementary masks drift slowly
# back towards the dense subspace (alignment 0.78 → 0.73, dense fraction 0.25 → 0.29, still
# all 16 features covered).

# %% [markdown]
# ## 5. Where the principle fails: low-rank dense features
#
# The masks' effect on a direction depends on its variance $a$ against the per-coordinate
# energy $b \approx \mathrm{tr}(C)/d_1$. Keep the dense energy fixed and lower the dense
# rank $r$: each dense direction then carries $\sigma^2 = k/r$, more and more variance, and
# complementary masks keep it correlated,
#
# $$\rho_{dense} = \frac{\sigma^2 - b}{\sigma^2 + b},\qquad \rho_{sparse} =
# \frac{k/d - b}{k/d + b},\qquad b \approx \frac{2k}{d_1} \text{ at equal energies,}$$
#
# so below $r = d = 16$ the dense features are *more* correlated between the views than the
# sparse ones. Train with complementary masks and without augmentation at six ranks. Twelve
# runs are many to write out; `decoupling_experiment(DecouplingConfig(...))` runs the same
# network and loss as section 3 (with its own seeds) and returns records of the metrics,
# the first (`recs[0]`) also holding the closed-form correlations:

# %%
base = DecouplingConfig(**SIZE, width=32, batch_size=128, steps=600, log_every=600, seed=0)
ranks = [2, 4, 8, 16, 24, 40]
sweep = {}
for aug in ("complementary", "none"):
    for r in ranks:
        recs = decoupling_experiment(replace(base, dense_rank=r, augmentation=aug))
        sweep[aug, r] = {**recs[-1], "rho": recs[0]["rho"]}
rows = [("rho_sparse", "compl", lambda e: f"{e['rho']['sparse']:7.2f}"),
        ("rho_dense", "compl", lambda e: f"{e['rho']['dense']:7.2f}"),
        ("alignment", "compl", lambda e: f"{e['alignment']:7.2f}"),
        ("alignment", "none", lambda e: f"{e['alignment']:7.2f}"),
        ("dense frac", "compl", lambda e: f"{e['dense_fraction']:7.2f}"),
        ("dense frac", "none", lambda e: f"{e['dense_fraction']:7.2f}"),
        ("covered/16", "compl", lambda e: f"{e['covered']:7d}"),
        ("covered/16", "none", lambda e: f"{e['covered']:7d}")]
print("dense rank r     " + "".join(f"{r:7d}" for r in ranks))
for label, aug, cell in rows:
    name = "complementary" if aug == "compl" else "none"
    print(f"{label:11s} {aug:5s}" + "".join(cell(sweep[name, r]) for r in ranks))

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.0, 2.9))
xs = np.arange(len(ranks))                      # one tick per rank
a1.plot(xs, [sweep["complementary", r]["rho"]["sparse"] for r in ranks], "o-", label="ρ sparse")
a1.plot(xs, [sweep["complementary", r]["rho"]["dense"] for r in ranks], "o-", color="C3",
        label="ρ dense")
a1.set_title("complementary masks: view correlations")
a1.legend(fontsize=7)
for aug, ls in (("complementary", "-"), ("none", "--")):
    a2.plot(xs, [sweep[aug, r]["alignment"] for r in ranks], "o" + ls, color="C2",
            label=f"alignment, {aug}")
    a2.plot(xs, [sweep[aug, r]["dense_fraction"] for r in ranks], "s" + ls, color="C3",
            label=f"dense fraction, {aug}")
a2.set(ylim=(0, 1), title="after 600 steps")
a2.legend(fontsize=6, loc="upper center")
for ax in (a1, a2):
    ax.set_xticks(xs, ranks)
    ax.set_xlabel("dense rank r")
fig.tight_layout()

# %% [markdown]
# **What to notice.** Plainly: **at ranks 8 and 16 complementary masks fail, and they do
# worse than no augmentation.** The dense part is at least as correlated between the views
# as the sparse part, and half of the neurons' weight ends up in the dense subspace (dense
# fraction 0.51 at rank 8, against 0.10 without augmentation); at most two features are
# covered. At rank 24 (gap 0.18) the masks work halfway (7 features covered); only the
# high-rank case, where each dense direction is weak, is fully decoupled. The
# augmentation is not good or bad by itself: what it does depends on the dense features'
# spectrum, which it cannot see.
#
# The gap does not tell the whole story either. At ranks 2 and 4 it is even more negative,
# yet the neurons partly recover the sparse features (alignment 0.71 at rank 2, 15
# features covered). A reading, not a derivation: 2 dense directions cannot hold 32
# distinct neurons, so the loss, which asks for distinct embeddings, pushes most of them
# elsewhere. Without augmentation the neurons at low rank leave the dense subspace too
# (dense fraction 0.01 at rank 2) but only reach mixtures of features (alignment 0.23):
# with identical views nothing selects the individual features. `docs/decoupling.md`
# shows the same failure at full size, and a case (three times the dense energy) where
# complementary masks push the neurons into the dense subspace outright.

# %% [markdown]
# ## 6. SupCon, in one paragraph
#
# With labels, the positives of an anchor need not come from augmentation: SupCon (Khosla et
# al. 2020) treats every other view with the anchor's label as a positive,
# $L_i = \frac{1}{|P(i)|}\sum_{p \in P(i)} r_{ip} + \tau\, \mathrm{LSE}_{a \ne i}(-r_{ia}/\tau)$
# with $r_{ij} = \frac12\|z_i - z_j\|^2$ (`minissl.supcon_loss(Z, labels, tau)`). It
# contains the loss trained above: with one label per sample (the two views of a sample
# share it, nothing else does) it *is* InfoNCE in the SimCLR arrangement.

# %%
net = runs["complementary"][0]
X = runs["complementary"][1].views(64, 2, rng=5)
z1, z2 = net.forward(X[:, 0]), net.forward(X[:, 1])
sup, _ = minissl.supcon_loss(np.concatenate([z1, z2]), np.tile(np.arange(64), 2), tau=0.2)
sim, _ = minissl.simclr_loss(z1, z2, "infonce", tau=0.2)
print(f"SupCon with sample labels {sup:.12f}   SimCLR InfoNCE {sim:.12f}")

# %% [markdown]
# With coarser labels each anchor has more positives, and the loss asks for invariance to
# everything the labels do not name; `docs/decoupling.md` ("SupCon") compares it with SSL
# on the latent trees of notebook 3.
#
# ## Exercises
#
# **Exercise 1 (why delocalised).** Make the sparse features coordinate-aligned,
# `basis="identity"` ($M = I_{:, :d}$: feature $j$ is coordinate $j$). What are the closed-form
# correlations under complementary masks, and what do the neurons learn with them?

# %% [answer]
# $\rho_{sparse} = 0$ exactly ($\rho_{dense} = 0.09$). For $v = e_j$, $b = v_j^2 C_{jj} = a$,
# so $(a - b)/(a + b) = 0$: a coordinate goes to one view or the other, never to both, and
# complementary masks now destroy the sparse features too. Training follows: alignment 0.06,
# dense fraction 0.98, no feature covered, worse than without augmentation (dense fraction
# 0.80). Masks decouple only because the sparse features are spread over many coordinates
# and survive in each half.
#
# ```python
# cfg = replace(base, augmentation="complementary", basis="identity", log_every=600)
# print(decoupling.closed_form_correlations(cfg.source()))   # sparse 0.0, dense 0.09
# r = decoupling_experiment(cfg)[-1]
# print(r["alignment"], r["dense_fraction"], r["covered"])   # 0.06 0.98 0
# ```

# %% [markdown]
# **Exercise 2 (a one-sided neuron).** Replace the symmetric threshold by a plain ReLU
# (`neuron="relu"` in `DecouplingConfig`) and train *without* augmentation. Does it need
# the augmentation?

# %% [answer]
# No, much less. With identical views the ReLU neurons reach alignment 0.61, 16 of 32 above
# 0.9 and 13 of 16 features covered (dense fraction 0.31), where the symmetric neurons stayed
# at 0.19 in the dense subspace. With complementary masks the ReLU goes further (alignment
# 0.88, 22 neurons, 15 features). The neuron's form matters as much as the augmentation:
# the one-sided gate is itself a sparsifying non-linearity, while a symmetric neuron with
# $b = 0$ is linear and sees only second moments, where the dense part dominates (a reading
# of these numbers, not a proof). The decoupling principle is a statement about Wen & Li's
# symmetric neuron.
#
# ```python
# for aug in ("none", "complementary"):
#     r = decoupling_experiment(replace(base, neuron="relu", augmentation=aug,
#                                       log_every=600))[-1]
#     print(aug, round(r["alignment"], 2), r["aligned"], round(r["dense_fraction"], 2), r["covered"])
# # none 0.61 16 0.31 13
# # complementary 0.88 22 0.09 15
# ```

# %% [markdown]
# **Exercise 3 (where the curves cross).** In section 5 the closed-form correlations cross at
# $r = 16 = d$. Where do they cross when the dense energy is doubled (`dense_energy=2`)?
# Predict, then check with `closed_form_correlations`.

# %% [answer]
# The two correlations are equal when a sparse and a dense direction have the same variance,
# $k/d = \sigma^2 = e\, k / r$, i.e. at $r = e\, d = 32$ (both directions then also have
# about the same $b \approx \mathrm{tr}(C)/d_1$, up to the spread of the delocalised
# vectors). The per-coordinate energy grows by half too ($\mathrm{tr}\, C = k(1 + e)$), so
# the sparse correlation falls from 0.32 to 0.14 at every rank: complementary masks
# decouple only above $r = 32$, and by less.
#
# ```python
# for r in (16, 32, 40):
#     s = minissl.SparseCoding(**{**SIZE, "dense_rank": r}, dense_energy=2.0, seed=0)
#     print(r, decoupling.closed_form_correlations(s))
# # r = 16: sparse 0.141, dense 0.436;  r = 32: 0.137, 0.137;  r = 40: 0.137, 0.031
# ```
