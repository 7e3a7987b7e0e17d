"""Notebook 3 of the minissl course: latent trees and luck (source of
03_latent_trees_and_luck.ipynb). Build it with ``python docs/course/refresh.py 03``.
"""
# %% [markdown]
# # 3 · Latent trees and luck
#
# *minissl course, notebook 3 of 6 —
# [previous: the covariance operator](02_covariance_operator.ipynb) ·
# [next: why BYOL does not collapse](04_why_byol_does_not_collapse.ipynb) ·
# [course index](README.md)*
#
# Notebook 2 showed that contrastive training grows each layer's weights along the top
# directions of the covariance operator. What do those directions *mean*? Tian, Yu, Chen &
# Ganguli (2020, §6) answer on data with a known hidden structure, the **Hierarchical Latent
# Tree Model** (HLTM): a tree of binary latent variables of which the network sees only the
# leaves. They find that hidden units come to encode latents they were never shown, and
# that the unit that wins is one that was *lucky at initialisation*. This notebook:
#
# 1. samples the tree, and measures what a positive pair shares;
# 2. builds the tree network, which mirrors the tree;
# 3. computes the exact posterior of each latent by the sum-product recursion, and measures
#    latent recovery per depth against the ceiling it sets, before and after training;
# 4. follows every unit's selectivity to show that the winners started ahead;
# 5. asks what the representation is good for: a linear probe of the root against the
#    Bayes-optimal accuracy.
#
# Everything uses `minissl`'s public API, NumPy and matplotlib, and takes about six seconds
# of CPU time.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minissl
from minissl.analysis import probes, selectivity

plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.4, 3.0), "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3})
np.set_printoptions(precision=3, suppress=True)


def fit(net, tree, steps, callback=None, **kw):
    """InfoNCE training of a tree network (τ 0.1, lr 0.1, batch 128)."""
    opts = dict(loss="infonce", tau=0.1, lr=0.1, batch_size=128, seed=2, log_every=100)
    return minissl.train(net, tree, steps=steps, callback=callback, **{**opts, **kw})

# %% [markdown]
# ## 1. The tree, and what a positive pair shares
#
# A full binary tree of depth $L = 4$: the root $z_0$ at tree depth 4, the 16 leaves at
# depth 0. Every node is 0 or 1. The root is a fair coin, and each child copies its parent
# except for a flip:
#
# $$P(z_\nu = z_\mu) = \tfrac12 (1 + \rho_\nu),\qquad |\rho_\nu| \sim U[0.7, 1],
# \text{ random sign, drawn once per tree.}$$
#
# In spins $s = 2z - 1$ a child is its parent times an independent sign of mean $\rho_\nu$,
# so the correlation of any two nodes is the **product of the polarities on the path**
# between them. The network only sees the leaves `x`; the latents `z` (the 15 non-leaf
# nodes, breadth-first, root first) are what we will look for in it.

# %%
tree = minissl.HLTM(depth=4, num_children=2, polarity=(0.7, 1.0), seed=1, negatives=4)
x, z = tree.sample(20000, rng=0)                   # x (20000, 16) leaves, z (20000, 15)
print(tree)
print("leaves", x.shape, " latents", z.shape, " depth of each latent:", tree.latent_depths)

L = tree.depth
depth_of = np.repeat(np.arange(L, -1, -1), tree.level_sizes)    # every node, BFS, leaves last
parent = tree.parents()
path = np.ones(tree.n_nodes)                       # product of rho from the root to each node
for i in range(1, tree.n_nodes):                   # BFS: a parent comes before its children
    path[i] = path[parent[i]] * tree.rho[i]
measured = [np.corrcoef(z[:, 0], x[:, j])[0, 1] for j in range(tree.n_leaves)]
print("corr(root, leaf j), measured:", np.round(measured, 2))
print("product of rho on the path:  ", np.round(path[-tree.n_leaves:], 2))

# %% [markdown]
# Measured and predicted agree to within 0.012, the sampling noise of 20,000 samples. Four
# edges of polarity 0.7–1 leave each leaf with a correlation of 0.37–0.77 with the root, of
# either sign: each leaf is a noisy, possibly inverted copy of it.
#
# **The augmentation.** A positive pair shares the root and resamples everything below it;
# a negative is an independent sample. A weaker augmentation, `keep_depth = d`, keeps every
# latent of tree depth $\ge d$. A node below the kept ones agrees between anchor and positive
# when the two independent descents from its nearest kept ancestor end on the same value:
#
# $$P(\text{agree}) = \tfrac12\Big(1 + \prod_{\text{path from the kept ancestor}}
# \rho_\nu^2\Big),\qquad P(\text{agree with a negative}) = \tfrac12 .$$
#
# `tree.pairs(..., return_all_latents=True)` returns the latents of all three samples, so
# what was kept can be counted.

# %%
def predicted_agreement(keep):
    """(1 + prod rho^2 from the nearest kept ancestor) / 2 for every node (BFS, leaves last)."""
    q = np.ones(tree.n_nodes)
    for i in range(1, tree.n_nodes):
        if depth_of[i] < keep:
            q[i] = q[parent[i]] * tree.rho[i] ** 2
    return (1 + q) / 2


fig, ax = plt.subplots(figsize=(5.6, 3.0))
depths = np.arange(L, -1, -1)
for c, keep in enumerate([4, 3, 2]):
    xa, xp, xn, za, zp, zn = tree.pairs(20000, rng=1, keep_depth=keep, return_all_latents=True)
    agree = (np.hstack([za, xa]) == np.hstack([zp, xp])).mean(axis=0)
    pred = predicted_agreement(keep)
    ax.plot(depths, [agree[depth_of == d].mean() for d in depths], "o", color=f"C{c}")
    ax.plot(depths, [pred[depth_of == d].mean() for d in depths], "-", color=f"C{c}",
            label=f"positive, keep_depth={keep}")
neg = (np.hstack([za, xa]) == np.hstack([zn, xn])).mean(axis=0)
ax.plot(depths, [neg[depth_of == d].mean() for d in depths], "s--", color="0.5",
        label="negative")
ax.set(xlabel="tree depth (4 = root, 0 = leaves)", ylabel="P(node agrees with the anchor)",
       title="dots: measured; lines: the formula", xlim=(4.2, -0.2), xticks=depths)
ax.legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# **What to notice.** With the default augmentation (blue) only the root is shared for
# sure; agreement fades with every edge below it, to 72% at depth 1 and 66% at the leaves,
# not far above a negative's 50%. What two views have in common is therefore mostly
# *information about the root*, carried weakly and redundantly by all 16 leaves. Keeping
# more of the tree (`keep_depth` 3, 2) makes the views more alike.

# %% [markdown]
# ## 2. The tree network
#
# `minissl.tree_network(tree, hid)` is a bias-free ReLU network that mirrors the tree:
# `hid` units per latent, one layer per tree level, each latent's group of units connected
# only to its children's groups (the leaves, at layer 1). Layer $l$ holds the units of the
# depth-$l$ latents, and the root's group, with no ReLU, is the output. The wiring is a fixed
# 0/1 mask on each weight matrix (`tree.network_masks(hid)`).

# %%
hid = 10
net = minissl.tree_network(tree, hid=hid, seed=1)
print("layer sizes", net.sizes)
masks = tree.network_masks(hid)
fig, axes = plt.subplots(1, L, figsize=(7.5, 2.2),
                         gridspec_kw={"width_ratios": [m.shape[1] for m in masks]})
for l, (ax, m) in enumerate(zip(axes, masks), start=1):
    ax.imshow(m, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set(title=f"layer {l}", xlabel=f"{m.shape[1]} inputs", xticks=[], yticks=[])
    ax.grid(False)
axes[0].set_ylabel("units (black: connected)")
fig.tight_layout()

# %% [markdown]
# Each block is one latent's 10 units reading its two children (two leaves at layer 1, two
# groups of 10 units above). A unit of latent μ sees only the leaves of μ's subtree, which
# sets how well it can possibly do.

# %% [markdown]
# ## 3. Latent recovery against its exact ceiling
#
# How much does a unit "know" about its latent? With $g_u$ the pre-activation of unit $u$,
# the **normalized correlation** of latent μ is that of its best unit,
#
# $$\mathrm{corr}_\mu = \max_{u \in \text{group}(\mu)} \big|\mathrm{Pearson}(z_\mu, g_u)\big| ,$$
#
# averaged per tree depth (`minissl.normalized_correlation`). No unit of μ's group can reach
# 1: it sees only the leaves under μ, and by Cauchy–Schwarz no function of those leaves
# correlates with $z_\mu$ more than their **posterior mean** $E[z_\mu \mid \text{leaves under
# } \mu]$. The **ceiling** of latent μ is $|\mathrm{Pearson}(z_\mu, E[z_\mu \mid
# \text{leaves under } \mu])|$.
#
# On a tree the posterior is exact, by one upward pass from the leaves (the *sum-product*
# recursion). In spins, write $u_\nu = E[s_\nu \mid \text{leaves under } \nu]$, so
# $u = 2x - 1 = \pm 1$ at a leaf, and $E[z_\nu \mid \cdot] = (1 + u_\nu)/2$. Every node is
# a fair coin on its own, so $P(\text{leaves under } \nu \mid s_\nu) \propto 1 + s_\nu
# u_\nu$. A child ν copies its parent μ with $P(s_\nu = s_\mu) = \tfrac12(1 + \rho_\nu)$;
# summing over $s_\nu = \pm 1$,
#
# $$P(\text{leaves under } \nu \mid s_\mu) \propto \sum_{s_\nu}
# \tfrac12(1 + \rho_\nu s_\mu s_\nu)(1 + s_\nu u_\nu) = 1 + \rho_\nu s_\mu u_\nu .$$
#
# The children's subtrees are independent given $s_\mu$, so the messages multiply:
#
# $$P(s_\mu = \pm 1 \mid \text{leaves under } \mu) \propto \prod_{\text{children } \nu}
# (1 \pm \rho_\nu u_\nu),\qquad u_\mu = \frac{A - B}{A + B},\quad
# A = \prod_\nu (1 + \rho_\nu u_\nu),\ B = \prod_\nu (1 - \rho_\nu u_\nu) .$$
#
# Ten lines of NumPy, checked against `tree.posterior_mean`:

# %%
x_ev, z_ev = tree.sample(4000, rng=3)              # fixed evaluation set


def posterior_by_hand(x):
    """E[z_mu | leaves under mu] for every latent, by the upward recursion on spins."""
    u = np.zeros((len(x), tree.n_nodes))
    u[:, -tree.n_leaves:] = 2 * x - 1              # a leaf: its own spin
    A, B = np.ones_like(u), np.ones_like(u)
    for i in range(tree.n_nodes - 1, -1, -1):      # BFS order backwards: children first
        if i < tree.n_latents:                     # a latent: all its children are done
            u[:, i] = (A[:, i] - B[:, i]) / (A[:, i] + B[:, i])
        if i > 0:                                  # send the message to the parent
            A[:, parent[i]] *= 1 + tree.rho[i] * u[:, i]
            B[:, parent[i]] *= 1 - tree.rho[i] * u[:, i]
    return (1 + u[:, :tree.n_latents]) / 2


print("max |by hand - tree.posterior_mean| =",
      f"{np.abs(posterior_by_hand(x_ev) - tree.posterior_mean(x_ev)).max():.0e}")

# %% [markdown]
# `minissl.correlation_ceiling` turns these posteriors into the ceiling of every latent. We
# train the network with InfoNCE (4 negatives, τ = 0.1) for 1,500 steps of 128 anchors,
# measuring every 100 steps on the fixed evaluation set; the callback also keeps every
# unit's value for section 4.

# %%
ceiling = minissl.correlation_ceiling(tree, x=x_ev, z=z_ev)
steps, records = [0], [minissl.normalized_correlation(tree, net, x=x_ev, z=z_ev)]
norms0 = selectivity.unit_norms(tree, net.weights, hid)      # ||w_u|| of every unit, at init


def record(rec):
    steps.append(rec["step"])
    records.append(minissl.normalized_correlation(tree, net, x=x_ev, z=z_ev))


hist = fit(net, tree, 1500, callback=record)
first, last = records[0], records[-1]
print("depth       ", "   ".join(f"d{d}  " for d in ceiling.by_depth))
for name, c in [("untrained", first), ("trained", last), ("ceiling", ceiling)]:
    print(f"{name:12s}", "  ".join(f"{v:.3f}" for v in c.by_depth.values()))
print(f"InfoNCE loss {hist['loss'][0]:.3f} -> {np.mean(hist['loss'][-100:]):.3f}")

# %%
fig, ax = plt.subplots(figsize=(5.6, 3.0))
for c, d in enumerate(ceiling.by_depth):
    ax.axhline(ceiling.by_depth[d], color=f"C{c}", lw=5, alpha=0.25)   # the ceiling: a band
    ax.plot(steps, [r.by_depth[d] for r in records], "o-", ms=2.5, lw=1, color=f"C{c}",
            label=f"depth {d}")
ax.set(xlabel="SGD step", ylabel="normalized correlation",
       title="latent recovery per depth (bands: the exact ceiling)")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()

# %% [markdown]
# **What to notice.** Training raises the correlation at depths 4, 3 and 2 and closes most
# of the gap to the ceiling (at the root 0.755 → 0.879 of a possible 0.912): the units
# learn latents that no loss ever named. The root gains most; it is the one thing positive
# pairs are sure to share (section 1). Depth 1 (red) starts *on* its ceiling band and stays
# there (0.931 of 0.933): its units see two
# leaves, two bits, and the best of 10 random units on them already carries almost all
# that those bits say about their parent.

# %% [markdown]
# ## 4. Luck: the winner was ahead at initialisation
#
# The paper's abstract says the covariance operator "specifically amplifies initial random
# selectivities". Call $s_u(t) = |\mathrm{Pearson}(z_\mu, g_u(t))|$ the **selectivity** of
# unit $u$ of latent μ (`Correlation.per_unit`, `(15, 10)`), and each latent's **winner**
# the unit with the largest $s_u$ at the end. Was it already the best at $t = 0$?
# `selectivity.amplification` answers with two numbers. **Spearman's rank correlation** of
# $s(0)$ and $s(T)$ is the Pearson correlation of their *ranks* (1: training kept the units'
# order exactly; 0: the final order is unrelated to the initial one). And the **initial rank**
# of each winner: 0 if it was already the best of its 10 at $t = 0$, 9 if it was the worst
# (chance: 4.5 on average).

# %%
s0, sT = first.per_unit, last.per_unit                       # (15, 10) each
norms1 = selectivity.unit_norms(tree, net.weights, hid)
print("depth  Spearman  initial rank of each winner   ||w(T)||/||w(0)||, winners  others")
for d in ceiling.by_depth:
    m = tree.latent_depths == d
    a = selectivity.amplification(s0[m], sT[m], norms0[m], norms1[m])
    print(f"{d:5d}  {a['spearman']:8.2f}  {str(a['ranks']):28s}"
          f"{a['growth_winner']:27.2f}  {a['growth_rest']:6.2f}")
amp = selectivity.amplification(s0, sT, norms0, norms1)
print(f"all 150 units: Spearman {amp['spearman']:.2f}; winners already the best of their 10: "
      f"{np.mean(amp['ranks'] == 0):.0%} (chance 10%), above their group's median: "
      f"{amp['above_median']:.0%}")
print(f"mean gain s(T) - s(0): winners {amp['gain_winner']:+.3f}, others {amp['gain_rest']:+.3f}")

# %%
traces = np.array([r.per_unit[0] for r in records])          # the root's 10 units over time
win = sT.argmax(axis=1)
fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.6, 3.2))
a1.plot(steps, traces, color="0.7", lw=0.8)
a1.plot(steps, traces[:, win[0]], color="C3", lw=1.5, label=f"winner (unit {win[0]})")
a1.axhline(ceiling.per_latent[0], color="k", ls="--", lw=0.8, label="ceiling")
a1.set(xlabel="SGD step", ylabel="selectivity $s_u$", title="the root's 10 units")
a1.legend(fontsize=7)
is_win = np.zeros_like(s0, dtype=bool)
is_win[np.arange(len(win)), win] = True
for c, d in enumerate(ceiling.by_depth):
    m = np.repeat((tree.latent_depths == d)[:, None], hid, axis=1)
    a2.scatter(s0[m & ~is_win], sT[m & ~is_win], s=8, color=f"C{c}", alpha=0.5)
    a2.scatter(s0[m & is_win], sT[m & is_win], s=50, color=f"C{c}", marker="*",
               edgecolor="k", lw=0.4, label=f"depth {d}")
a2.plot([0, 1], [0, 1], "k:", lw=0.8)
a2.set(xlabel="initial selectivity $s_u(0)$", ylabel="final $s_u(T)$",
       title="every unit (stars: each latent's winner)")
a2.legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# **What to notice.** Every winner started above its group's median and two thirds of them
# were already the best of their 10 (chance: one in ten); the others were second to fourth.
# The root's winner (left, red) led from step 0 to the end. Training does not pick a unit
# and teach it the latent from scratch: it amplifies the unit that happened to start
# pointing the right way. The amplification shows in the **weights**: the winners' weight
# rows grow by 5–57% per depth, the others' by 1–10%. It does not show as a larger gain in
# selectivity: the weaker units start lower and also move towards the latent (many of the
# root's climb from below 0.2 to about 0.8), so the others gain more on average, and the
# rank order is kept best where units barely move (depth 1, Spearman 0.99) and least at
# depth 3 (0.37).

# %% [markdown]
# ## 5. What the representation is good for: a linear probe of the root
#
# A common test of a representation is a **linear probe**: fit a logistic regression of a
# label on the features and score it on fresh data. Here the label is the root $z_0$, and
# the features are the leaves, each hidden layer $f_l = \mathrm{relu}(g_l)$ and the output
# (`probes.representations`, `probes.probe`). Nothing beats the **Bayes classifier**, which
# thresholds the exact posterior $E[z_0 \mid \text{all leaves}]$ at ½
# (`probes.bayes_accuracy`; for the root, `tree.posterior_mean` is that posterior).
# We probe the trained network and an untrained copy (same seed, same initial weights).

# %%
(x_tr, z_tr), (x_te, z_te) = tree.sample(2000, rng=8), tree.sample(2000, rng=9)
bayes = probes.bayes_accuracy(tree.posterior_mean(x_te)[:, :1], z_te[:, :1])[0]
untrained = minissl.tree_network(tree, hid=hid, seed=1)
acc = {}
for name, model in [("untrained", untrained), ("trained", net)]:
    R_tr, R_te = probes.representations(model, x_tr), probes.representations(model, x_te)
    acc[name] = {k: probes.probe(R_tr[k], z_tr[:, 0], R_te[k], z_te[:, 0])[0] for k in R_tr}
names = list(acc["trained"])
print(f"{'':10s}", "  ".join(f"{k:>8s}" for k in names))
for name in acc:
    print(f"{name:10s}", "  ".join(f"{acc[name][k]:8.3f}" for k in names))
print(f"Bayes accuracy: {bayes:.3f}   (test set of 2000: standard error about 0.005)")

fig, ax = plt.subplots(figsize=(5.6, 2.8))
pos = np.arange(len(names))
ax.bar(pos - 0.2, [acc["untrained"][k] for k in names], 0.4, label="untrained")
ax.bar(pos + 0.2, [acc["trained"][k] for k in names], 0.4, label="trained")
ax.axhline(bayes, color="k", ls="--", lw=0.8, label="Bayes")
ax.set(xticks=pos, xticklabels=names, ylim=(0.8, 1.0), ylabel="test accuracy",
       title="linear probe of the root")
ax.legend(fontsize=7, loc="upper center", ncol=3)
fig.tight_layout()

# %% [markdown]
# **What to notice.** The raw leaves are already almost as good as Bayes: on this tree the
# posterior log-odds of the root is close to linear in the leaves, so no representation can
# make the root much *more* linearly decodable. What training does is move that information
# up the network into the 10 output units: the untrained output reaches 0.907, the trained
# one 0.954, level with the leaves (0.957) and Bayes (0.958). A probe measures what a layer
# keeps; the Bayes accuracy tells how much there was to keep.
#
# Two measurements of the paper's claims go further than a notebook should:
# `python -m minissl selectivity` (docs/hltm.md) repeats section 4 at depth 5 over several
# seeds and checks that the weights move along the covariance operator's top eigenvectors
# (75–83% of each layer's change, against 1–9% for a random subspace of the
# same size), and `python -m minissl acceleration` (docs/theory.md) asks whether a trained
# top layer speeds up the learning of the bottom one (yes for the simple loss, mixed for
# InfoNCE).
#
# ## Exercises
#
# Each exercise changes one thing above. Predict, then run it, then open the answer.
#
# **Exercise 1 (weak polarity).** Build the tree with `polarity=(0.4, 0.7)` (same seed) and
# rerun sections 3 and 5. What happens to the ceiling at the root, and how much of the gap
# to it does training close?

# %% [answer]
# The ceiling at the root falls from 0.91 to 0.31 (Bayes accuracy 0.64, the leaves' linear
# probe 0.63): four weak edges leave the leaves with little about the root. And training
# hardly moves: 0.191 → 0.203 at the root in 1,500 steps, a tenth of the gap, against four
# fifths for the strong tree. Section 1 says why: with $\rho^2 \approx 0.3$ per edge, the
# leaves of a positive pair agree 50.7% of the time against 50% for a negative, and the
# contrastive signal is made only of what the two views share. (docs/hltm.md's sweep finds
# the same at depth 4 over three seeds.)
#
# ```python
# weak = minissl.HLTM(depth=4, polarity=(0.4, 0.7), seed=1, negatives=4)
# xw, zw = weak.sample(4000, rng=3)
# net_w = minissl.tree_network(weak, hid=10, seed=1)
# before = minissl.normalized_correlation(weak, net_w, x=xw, z=zw).by_depth
# fit(net_w, weak, 1500)
# after = minissl.normalized_correlation(weak, net_w, x=xw, z=zw).by_depth
# ceil = minissl.correlation_ceiling(weak, x=xw, z=zw).by_depth
# print(f"root: ceiling {ceil[4]:.3f}, untrained {before[4]:.3f}, trained {after[4]:.3f}")
# xa, xp, _ = weak.triples(20000, rng=1)
# print("leaves of a positive pair agree:", (xa == xp).mean())       # 0.507
# (a, b), (c, d) = weak.sample(2000, rng=8), weak.sample(2000, rng=9)
# print("Bayes", probes.bayes_accuracy(weak.posterior_mean(c)[:, :1], d[:, :1])[0],
#       "leaves", probes.probe(a, b[:, 0], c, d[:, 0])[0])             # 0.640 0.627
# ```

# %% [markdown]
# **Exercise 2 (more lottery tickets).** Rerun sections 3 and 4 with `hid = 3` and
# `hid = 30` units per latent instead of 10. Does the untrained network start closer to
# the ceiling with more units? Does it end higher? Is the winner still the unit that
# started best?

# %% [answer]
# It starts closer: the best of more random units is better, 0.668, 0.755 and 0.795 at the
# root for `hid` 3, 10 and 30 (ceiling 0.912). It does not end higher here: 0.873, 0.879
# and 0.879 after 1,500 steps. More tickets buy a better start, not a better end on this
# small tree. The winner is still mostly the unit that started best: in 80%, 67% and 73% of
# the latents, against chance 33%, 10% and 3%; at `hid` 30 the root's winner started
# second and one depth-3 winner eighth of 30.
#
# ```python
# for h in (3, 10, 30):
#     n_h = minissl.tree_network(tree, hid=h, seed=1)
#     c0 = minissl.normalized_correlation(tree, n_h, x=x_ev, z=z_ev)
#     fit(n_h, tree, 1500)
#     c1 = minissl.normalized_correlation(tree, n_h, x=x_ev, z=z_ev)
#     ranks = selectivity.amplification(c0.per_unit, c1.per_unit)["ranks"]
#     print(h, round(c0.by_depth[4], 3), round(c1.by_depth[4], 3), ranks,
#           f"{np.mean(ranks == 0):.0%}")
# ```

# %% [markdown]
# **Exercise 3 (what the output forgets).** In section 5 probe the eight depth-1 latents
# instead of the root (`cols = np.flatnonzero(tree.latent_depths == 1)`, labels
# `z_tr[:, cols]`; `probes.probe` takes several label columns). Their Bayes accuracy comes
# from `probes.posterior_all_leaves(tree, x_te)`: every layer is a function of all 16
# leaves, and leaves outside a latent's subtree also tell about it. Does training put them
# into the output as well as the root?

# %% [answer]
# No. The output's probe rises from 0.881 to 0.925 (mean over the eight latents), but the
# leaves give 0.976 and Bayes 0.978; layer 1, whose units belong to the depth-1 latents,
# keeps it all (0.976). The output keeps what positive pairs share: the root in full, a
# depth-1 latent only in part (it agrees between the two views 72% of the time, section 1),
# so the loss does not ask the top of the network to keep it. It gains a little because the
# depth-1 latents are correlated with the root.
#
# ```python
# cols = np.flatnonzero(tree.latent_depths == 1)            # the 8 depth-1 latents
# for name, model in [("untrained", untrained), ("trained", net)]:
#     R_tr, R_te = probes.representations(model, x_tr), probes.representations(model, x_te)
#     print(name, {k: round(float(probes.probe(R_tr[k], z_tr[:, cols], R_te[k],
#                                              z_te[:, cols]).mean()), 3) for k in R_tr})
# post = probes.posterior_all_leaves(tree, x_te)
# print("Bayes", probes.bayes_accuracy(post[:, cols], z_te[:, cols]).mean())   # 0.978
# ```
