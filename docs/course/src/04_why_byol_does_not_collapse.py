"""Notebook 4 of the minissl course: why BYOL does not collapse (source of
04_why_byol_does_not_collapse.ipynb). Build it with ``python docs/course/refresh.py 04``.
"""
# %% [markdown]
# # 4 · Why BYOL does not collapse
#
# *minissl course, notebook 4 of 6 —
# [previous: latent trees and luck](03_latent_trees_and_luck.ipynb) ·
# [next: feature decoupling](05_feature_decoupling.ipynb) ·
# [course index](README.md)*
#
# BYOL (Grill et al. 2020) learns without negative pairs. An *online* network $f$ and a
# *predictor* $p$ are trained so that $p(f(x_1))$ matches a *target* network's embedding
# $f_t(x_2)$ of another view of the same sample; the target is not trained but follows the
# online weights as an exponential moving average (EMA), $\theta_t \leftarrow \mathrm{ema}\,
# \theta_t + (1 - \mathrm{ema})\,\theta$, and no gradient flows through it
# (stop-gradient, "sg"):
#
# $$L = \tfrac12 \big\| n(p(f(x_1))) - n(\mathrm{sg}\, f_t(x_2)) \big\|^2 \quad
# (\text{symmetrised over the two views; } n = \text{L2 normalisation}).$$
#
# Nothing pushes different samples apart, and a network that maps every input to the same
# point reaches the minimum, $L = 0$. So why does training not simply **collapse**? This
# notebook follows the BYOL analysis of Tian, Yu, Chen & Ganguli (2020) and its sequel,
# Tian, Chen & Ganguli (2021), *Understanding self-supervised learning dynamics without
# contrastive pairs* (which introduced DirectPred):
#
# 1. one BYOL step written out in NumPy (BatchNorm forward and backward, predictor,
#    stop-gradient, EMA), checked against `minissl.BYOL`;
# 2. collapse without a predictor, and the predictor × BatchNorm ablation;
# 3. BatchNorm's mean as an implicit contrastive term;
# 4. linear BYOL solved exactly;
# 5. a quantity it conserves up to weight decay;
# 6. its fixed points and the weight-decay threshold beyond which it must collapse;
# 7. DirectPred: a predictor set from the data's correlation instead of trained.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minissl
from minissl import experiments, linear_byol

plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.4, 3.0), "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3})
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. One BYOL step, written out
#
# The data: 8 Gaussian cluster centres in 16 dimensions; a view is a centre plus noise of
# size 1. The encoder is $f(x) = W_2\, \mathrm{relu}(\mathrm{BN}(W_1 x))$, `16 → 64 → 16`.
# **BatchNorm** standardises each hidden unit over the batch: for pre-activations $g$ (one
# row per input) with batch mean $m$ and variance $v$ per unit,
#
# $$y = (g - m)\, r,\qquad r = 1/\sqrt{v + \epsilon}\quad(\epsilon = 10^{-5}).$$
#
# The predictor is linear, $p = W_p z$. Both views of N samples go through the encoder as one
# batch of 2N rows (BN's statistics are over all of them); row $i$'s target is the other
# view $i'$ of the same sample, embedded by the target network (weights $T_1, T_2$) as
# $z^t_{i'}$. The loss is $L = \frac1{2N} \sum_i \big(1 - n(p_i) \cdot n(z^t_{i'})\big)$ with
# $n(a) = a/\|a\|$, the same as the $\tfrac12\|n(p) - n(z^t)\|^2$ above. Backward, in
# the order of the code below:
#
# * through the normalisation $q = n(p)$: $\partial L/\partial p = (\partial L/\partial q - q\,
#   (q \cdot \partial L/\partial q)) / \|p\|$ (only the part of the gradient orthogonal to $q$
#   changes $q$);
# * through the linear layers and the ReLU gate as in notebook 1;
# * through BN, whose $m$ and $v$ depend on every row of the batch, so $g_i$ moves every
#   $y_j$. With $\delta = \partial L/\partial y$ (one row per input, means over the batch),
#
# $$\frac{\partial L}{\partial g} = r\,\Big(\underbrace{\delta}_{\text{direct}}
# \;\underbrace{-\ \operatorname{mean}(\delta)}_{\text{through } m}
# \;\underbrace{-\ y \odot \operatorname{mean}(\delta \odot y)}_{\text{through } v}\Big) .$$
#
# The **stop-gradient** is simply that nothing is differentiated through the target's
# output $z^t$: it enters as a constant.

# %%
src = minissl.GaussianClusters(n_clusters=8, dim=16, noise=1.0, seed=0)


def normalize(a):
    """n(a): each row divided by its length."""
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def encode(x, W1, W2, eps=1e-5):
    """Linear -> BN -> ReLU -> Linear; returns z (2N, d) and what the backward needs."""
    g = x @ W1.T                                          # (2N, 64) pre-activations
    r = 1 / np.sqrt(g.var(axis=0) + eps)                  # BN: 1 / std of each unit over the batch
    y = (g - g.mean(axis=0)) * r                          # BN output: mean 0, variance ~1
    h = np.maximum(y, 0)                                  # ReLU
    return h @ W2.T, (y, h, r)

# %%
def byol_grads(W1, W2, Wp, T1, T2, x1, x2, bn_backward=True):
    """BYOL's symmetric loss and the gradients of W1, W2, Wp, written out."""
    x = np.concatenate([x1, x2])                          # both views in one batch, (2N, n_0)
    z, (y, h, r) = encode(x, W1, W2)                      # online embedding
    p = z @ Wp.T                                          # prediction
    zt, _ = encode(x, T1, T2)                             # target: a constant (stop-gradient)
    t = normalize(np.roll(zt, len(x) // 2, axis=0))       # row i's target: the other view's
    q = normalize(p)
    L = np.mean(1 - (q * t).sum(axis=1))                  # mean of 1 - cos over the 2N rows
    dq = -t / len(x)                                      # dL/dq
    dp = (dq - q * (q * dq).sum(axis=1, keepdims=True)) / np.linalg.norm(p, axis=1, keepdims=True)
    dWp, dz = dp.T @ z, dp @ Wp                           # predictor
    dW2, dy = dz.T @ h, (dz @ W2) * (y > 0)               # top Linear, ReLU gate
    if bn_backward:                                       # BN: direct, mean and variance paths
        dg = r * (dy - dy.mean(axis=0) - y * (dy * y).mean(axis=0))
    else:                                                 # a wrong backward: the direct path only
        dg = r * dy
    return L, dg.T @ x, dW2, dWp

# %% [markdown]
# A step then updates the online weights by SGD with weight decay η,
# $W \leftarrow W - \mathrm{lr}\,(\partial L/\partial W + \eta W)$ (the predictor too), and
# moves the target towards them by the **exponential moving average** (EMA)
# $T \leftarrow \mathrm{ema}\; T + (1 - \mathrm{ema})\, W$. `minissl.BYOL(n_in, cfg)` holds
# the same three networks (`online`, `predictor`, `target`) and `model.step(x1, x2)` takes
# one step. Start both from the same weights, feed both the same batches, and compare:

# %%
cfg = minissl.BYOLConfig()                 # the defaults: BN, linear predictor, EMA 0.99
lr, eta, ema = cfg.lr, cfg.weight_decay, cfg.ema
print(f"lr {lr}, weight decay {eta}, ema {ema}, batch {cfg.batch_size}")
model = minissl.BYOL(16, cfg)
W1, W2 = (W.copy() for W in model.online.weights)
T1, T2 = (W.copy() for W in model.target.weights)
Wp = model.Wp.copy()
rng = np.random.default_rng(0)
for step in range(5):
    x1, x2, _ = src.triples(cfg.batch_size, rng)
    L, dW1, dW2, dWp = byol_grads(W1, W2, Wp, T1, T2, x1, x2)
    W1, W2, Wp = W1 - lr * (dW1 + eta * W1), W2 - lr * (dW2 + eta * W2), Wp - lr * (dWp + eta * Wp)
    T1, T2 = ema * T1 + (1 - ema) * W1, ema * T2 + (1 - ema) * W2
    print(f"step {step}: loss by hand {L:.12f}, model.step {model.step(x1, x2):.12f}")
lib = [*model.online.weights, model.Wp, *model.target.weights]
print("max |by hand - minissl| over all weights after 5 steps:",
      f"{max(np.abs(a - b).max() for a, b in zip([W1, W2, Wp, T1, T2], lib)):.0e}")
_, dW1_direct, _, _ = byol_grads(W1, W2, Wp, T1, T2, x1, x2, bn_backward=False)
_, dW1, _, _ = byol_grads(W1, W2, Wp, T1, T2, x1, x2)
print(f"BN's direct path alone misses {np.linalg.norm(dW1_direct - dW1) / np.linalg.norm(dW1):.0%} "
      f"of dW1 (relative error)")

# %% [markdown]
# The hand-written step and `minissl` agree to rounding, and leaving out BN's mean and
# variance paths gives a visibly wrong gradient: BN's backward is part of what BYOL trains
# with. From here on `minissl.BYOL` and `minissl.train_byol` (which repeats `model.step` on
# fresh batches and records diagnostics) take the steps.
#
# ## 2. Collapse without a predictor
#
# Now train. The target is a copy of the online net (`ema = 0`, SimSiam's stop-gradient
# twin), and the predictor is none or the linear $W_p$. Three measures of collapse are
# recorded during training (`minissl.collapse_diagnostics`):
#
# * **effective rank** of the embeddings: 1 if they all lie on one line, 16 for a flat
#   spectrum;
# * **std·√d**: the spread of the normalised embeddings over the sphere, about 1 when
#   spread, 0 when collapsed;
# * the **collapsed loss**: the loss the best *constant* prediction would get. A loss far
#   below it means the network uses what distinguishes samples; loss ≈ collapsed loss ≈ 0
#   means it has collapsed.
#
# We train the four combinations of {no predictor, linear predictor} × {no BN, BN after the
# hidden layer} with `minissl.train_byol`.

# %%
base = minissl.BYOLConfig(log_every=20, ema=0.0, seed=0)   # otherwise the defaults of section 1
print(f"{base.steps} steps of {base.batch_size} samples, embedding width d = {base.out_dim}")
no_bn = dict(bn_mean="omit", bn_var="omit")
runs = {"no predictor, no BN": dict(predictor="none", **no_bn),
        "no predictor, BN": dict(predictor="none"),
        "linear predictor, no BN": dict(predictor="linear", **no_bn),
        "linear predictor, BN": dict(predictor="linear")}
hists = {name: minissl.train_byol(src, base, **kw)[1] for name, kw in runs.items()}

fig, (a1, a2) = plt.subplots(1, 2)
for name, h in hists.items():
    ls = "--" if "no BN" in name else "-"
    a1.plot(h["step"], h["effective_rank"], ls, label=name)
    a2.plot(h["step"], h["std"], ls, label=name)
a1.set(xlabel="step", title="effective rank of the embeddings")
a2.set(xlabel="step", title="std·√d of normalised embeddings")
a1.legend(fontsize=7)
fig.tight_layout()
print(f"{'':26s} eff. rank   std·√d    loss   collapsed loss")
for name, h in hists.items():
    r = h.records[-1]
    print(f"{name:26s} {r['effective_rank']:9.2f} {r['std']:8.3f} {r['eval_loss']:8.4f} "
          f"{r['collapsed_loss']:10.4f}")

# %% [markdown]
# **What to notice.** Without a predictor both runs collapse steadily: the effective rank
# falls from about 5.7 at step 20 (the first record) to 1.1–1.3 at step 300, std·√d from 0.2
# to 0.01–0.03, and the loss sits at the collapsed loss, both ≈ 0. With a linear predictor
# neither collapses: the rank stays near 8 for the first 100 steps and ends at 6.8 (there are
# 8 clusters), std·√d rises to 0.8–0.9, and the loss stays far
# below the collapsed loss. **BN makes no difference here, with or without a predictor.**
# That is an honest negative result on this toy for the BN part of the paper's account
# (`docs/byol.md` §3 has the full ablation, including BN's mean detached, and an HLTM
# dataset where BN's mean does matter).

# %% [markdown]
# ## 3. BatchNorm's mean is an implicit contrastive term
#
# Even where it does not decide the outcome, BN changes the gradient in a way that looks
# like a contrastive loss. Take the first layer, $g = W_1 x$, on a batch of $B$ rows (both
# views), and split its gradient $dW_1 = \sum_i (\partial L/\partial g_i)\, x_i^\top$ along
# the three terms of BN's backward in section 1. With $\delta_i = r \odot \partial L/\partial
# y_i$ the direct term of row $i$, the term through the batch mean adds
#
# $$dW_{\text{mean}} = -\frac1B \sum_i \sum_j \delta_i x_j^\top ,\qquad
# dW_{\text{direct}} + dW_{\text{mean}} = \sum_i \delta_i (x_i - \bar x)^\top = B\,
# \mathrm{Cov}_{\text{batch}}(\delta, x) :$$
#
# a sum over pairs of *different* rows $i \ne j$ with a minus sign, the shape of the
# negative-pair term of a contrastive loss, although no negative pair was ever formed.
# `BYOL.implicit_contrastive(x1, x2)` returns these parts of one layer's gradient (and the
# variance term) for the model's current weights.

# %%
model = minissl.BYOL(16, base)                       # BN (mean and variance) + linear predictor
rng = np.random.default_rng(0)
for step in range(100):                              # a little training first
    x1, x2, _ = src.triples(64, rng)
    model.step(x1, x2)
x1, x2, _ = src.triples(256, rng=1)
parts = model.implicit_contrastive(x1, x2)           # first layer's gradient, by BN path
cov_form = parts["direct"] + parts["mean"]
print(f"||dW_mean|| / ||dW_total||:                  "
      f"{np.linalg.norm(parts['mean']) / np.linalg.norm(parts['total']):.3f}")
print(f"share of the i != j pairs in the mean path:   "
      f"{np.linalg.norm(parts['mean_cross']) / np.linalg.norm(parts['mean']):.4f}")
print(f"|| (direct + mean) - B Cov(delta, x) || rel.: "
      f"{np.linalg.norm(cov_form - parts['covariance']) / np.linalg.norm(parts['covariance']):.1e}")

# %% [markdown]
# The mean path carries about a third of the gradient's norm here, it is made almost
# entirely of pairs of different rows ($i \ne j$; the $j = i$ part is one term in $B = 512$), and
# the direct and mean paths together are exactly the batch covariance form.

# %% [markdown]
# ## 4. Linear BYOL, exactly
#
# To see *why* a predictor prevents collapse, make everything linear (Tian, Chen & Ganguli
# 2021): online $W$ ($d \times n$), predictor $W_p$ ($d \times d$), target $W_a$ ($d \times
# n$), no BN, no normalisation. With the data statistics $X = \mathbb E[\bar x \bar x^\top]$
# ($\bar x$ the augmentation mean of a sample) and the augmentation covariance $X'$, the loss
# $\tfrac12 \mathbb E\|W_p W x_1 - \mathrm{sg}(W_a x_2)\|^2$ gives the gradient flow
#
# $$\begin{aligned}
# \dot W_p &= \alpha_p\, (W_a X - W_p W (X + X')) W^\top - \eta\, W_p \\
# \dot W &= W_p^\top (W_a X - W_p W (X + X')) - \eta\, W \\
# \dot W_a &= \beta\, (W - W_a)
# \end{aligned}$$
#
# with $\alpha_p$ the predictor's relative learning rate, $\eta$ the weight decay and
# $\beta$ the EMA rate (`ema = 1 − lr·β`, time $t$ = lr × steps). `linear_byol.integrate`
# solves it (SciPy's DOP853, rtol 1e-10) and `linear_byol.default_problem()` gives a small
# instance: $n = 6$, $d = 4$, eigenvalues of $X$ from 2 down to 0.2, $X' = 0.5\,I$,
# $W_a(0) = W(0)$.

# %%
W0, Wp0, Wa0, X, Xp = linear_byol.default_problem()
s = np.sort(np.linalg.eigvalsh(X))[::-1]
print("eigenvalues of X:", s, "  X' = 0.5 I")

fig, axes = plt.subplots(1, 2, sharey=True)
for ax, (alpha_p, eta, T) in zip(axes, [(1.0, 0.01, 20.0), (0.3, 0.2, 60.0)]):
    t, Ws, _, _ = linear_byol.integrate(W0, Wp0, Wa0, X, Xp, T, alpha_p=alpha_p, eta=eta)
    ax.plot(t, np.linalg.svd(Ws, compute_uv=False))
    ax.set(xlabel="t", title=f"α_p = {alpha_p}, η = {eta}")
axes[0].set_ylabel("singular values of W(t)")
fig.tight_layout()

# %% [markdown]
# Left: a predictor as fast as the encoder and little weight decay; the singular values of
# $W$ settle at nonzero values. Right: a slow predictor and strong weight decay; every
# singular value decays to zero, the linear version of collapse. Sections 5 and 6 explain
# the difference.

# %% [markdown]
# ## 5. A conserved quantity (up to weight decay)
#
# Write $R = W_a X - W_p W (X + X')$, so that $\dot W = W_p^\top R - \eta W$ and
# $\dot W_p = \alpha_p R W^\top - \eta W_p$. Then
#
# $$\frac{d}{dt}\big(W W^\top\big) = W_p^\top R W^\top + W R^\top W_p - 2\eta\, W W^\top,
# \qquad
# \frac{d}{dt}\Big(\frac{W_p^\top W_p}{\alpha_p}\Big) = W R^\top W_p + W_p^\top R W^\top -
# 2\eta\, \frac{W_p^\top W_p}{\alpha_p},$$
#
# and the first two terms are the same. So the difference obeys
# $\frac{d}{dt} C = -2\eta\, C$:
#
# $$C(t) = W W^\top - \frac{W_p^\top W_p}{\alpha_p} = e^{-2\eta t}\, C(0).$$
#
# The derivation never used $W_a$, $\beta$, $X$, $X'$ or the symmetry of $W_p$: it only uses
# that $W_p$ and $W$ are adjacent linear maps trained by gradient flow with the **same**
# weight-decay rate η. Check it on the exact ODE, for several settings and a non-symmetric
# predictor, and check that the plausible variant $W_p W_p^\top$ does not work:

# %%
def invariant(W, Wp, alpha_p, transpose_first=True):
    """C = W W^T - Wp^T Wp / alpha_p (or, as a wrong variant, with Wp Wp^T)."""
    P = Wp.T @ Wp if transpose_first else Wp @ Wp.T
    return W @ W.T - P / alpha_p

# %%
print(f"W_p(0) symmetric? ||W_p - W_p^T|| / ||W_p|| = "
      f"{np.linalg.norm(Wp0 - Wp0.T) / np.linalg.norm(Wp0):.2f}")
fig, ax = plt.subplots(figsize=(5.2, 3.0))
for k, (alpha_p, beta, eta) in enumerate([(1.0, 1.0, 0.05), (3.0, 0.2, 0.1),
                                          (0.3, 5.0, 0.2), (2.0, 0.0, 0.0)]):
    t, Ws, Wps, _ = linear_byol.integrate(W0, Wp0, Wa0, X, Xp, 15.0, alpha_p=alpha_p,
                                          beta=beta, eta=eta)
    C0 = invariant(W0, Wp0, alpha_p)
    C = np.array([invariant(W, Wp, alpha_p) for W, Wp in zip(Ws, Wps)])
    dev = max(np.linalg.norm(c - np.exp(-2 * eta * tt) * C0) for tt, c in zip(t, C))
    wrong = max(np.linalg.norm(invariant(W, Wp, alpha_p, False) - np.exp(-2 * eta * tt)
                               * invariant(W0, Wp0, alpha_p, False)) for tt, W, Wp in zip(t, Ws, Wps))
    label = f"α_p={alpha_p}, β={beta}, η={eta}"
    ax.semilogy(t, np.linalg.norm(C, axis=(1, 2)) / np.linalg.norm(C0), f"C{k}", label=label)
    ax.semilogy(t, np.exp(-2 * eta * t), f"C{k}:", lw=2)
    print(f"{label:24s} max ||C(t) - e^(-2ηt) C(0)|| / ||C(0)|| = "
          f"{dev / np.linalg.norm(C0):.0e}   with Wp Wp^T: "
          f"{wrong / np.linalg.norm(invariant(W0, Wp0, alpha_p, False)):.2f}")
ax.set(xlabel="t", ylabel="||C(t)|| / ||C(0)||", title="lines: ODE; dotted: $e^{-2\\eta t}$")
ax.legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# The identity holds to the integrator's tolerance in every setting: with a frozen
# target (β = 0), a fast one (β = 5), without weight decay (then $C$ is conserved), and for
# a predictor that is far from symmetric. The order matters: with $W_p W_p^\top$ it fails.
#
# **Under which conditions does it hold in a real run?** Three, each checked below with
# BYOL's own SGD (`minissl.BYOL`) rather than the ODE:
#
# * **The same weight decay per unit time on $W$ and $W_p$.** minissl's default
#   (`predictor_wd="ode"`) decays the predictor by `lr·η` per step, the ODE's $-\eta W_p$.
#   The paper authors' code (`predictor_wd="optimizer"`, part of
#   `BYOLConfig.from_preset("reference")`) puts the same η in the predictor's optimiser,
#   whose learning rate is $\alpha_p$ times larger, i.e. a decay $\alpha_p \eta$; then
#   $\dot C = -2\eta\,(W W^\top - W_p^\top W_p)$, which is not proportional to $C$ unless
#   $\alpha_p = 1$, and the identity fails.
# * **Gradient steps small enough**: SGD is a discretisation, off by $O(\mathrm{lr})$.
# * **A predictor trained by gradient** (DirectPred, section 7, sets $W_p$ directly).
#
# And one generalisation: nothing requires the encoder to be linear. $W$ can be the **last
# layer** of a deep ReLU encoder with BN inside, and the loss can normalise $p$: the two
# terms still cancel, because $p = W_p W h$ for whatever $h$ the layers below produce.

# %%
def invariant_in_sgd(cfg, n_in, source, steps, alpha_p, eta, lr, init=None, seed=0):
    """Run BYOL's SGD; return max_t ||C(t) - e^(-2 eta t) C(0)|| / ||C(0)||, C from the
    encoder's last layer and the linear predictor (t = lr * step)."""
    model = minissl.BYOL(n_in, cfg)
    if init is not None:
        model.set_weights(online=[init[0]], predictor=[init[1]], target=[init[2]])
    C_of = lambda: invariant(model.online.weights[-1], model.Wp, alpha_p)   # noqa: E731
    C0, rng, dev = C_of(), np.random.default_rng(seed), 0.0
    for k in range(1, steps + 1):
        model.step(*source.triples(cfg.batch_size, rng)[:2])
        if k % 50 == 0:
            dev = max(dev, np.linalg.norm(C_of() - np.exp(-2 * eta * k * lr) * C0))
    return dev / np.linalg.norm(C0)

# %%
alpha_p, eta, lr = 3.0, 0.1, 0.01
linear = dict(hidden=(), out_dim=4, predictor="linear", normalize=False, ema=1 - lr,
              lr=lr, predictor_lr=alpha_p, weight_decay=eta, batch_size=256)
gauss = minissl.GaussianViews(X, Xp)
for wd in ("ode", "optimizer"):
    cfg = minissl.BYOLConfig(**linear, predictor_wd=wd)
    print(f"linear BYOL, SGD, predictor_wd={wd!r:11s}: deviation "
          f"{invariant_in_sgd(cfg, 6, gauss, 1000, alpha_p, eta, lr, (W0, Wp0, Wa0)):.3f}")
deep = minissl.BYOLConfig(hidden=(32,), out_dim=8, predictor="linear", ema=0.99, lr=lr,
                          predictor_lr=alpha_p, weight_decay=eta, batch_size=64)
print(f"ReLU encoder 16-32-8 with BN, normalised loss: deviation "
      f"{invariant_in_sgd(deep, 16, src, 1000, alpha_p, eta, lr):.3f}")

# %% [markdown]
# With minissl's convention the deviation over $t \in [0, 10]$ is a fraction of a percent
# (the SGD noise and the finite step); with the authors' convention and $\alpha_p = 3$ it is
# tens of percent: $C$ stops decaying. The deep encoder with BN follows the law as well as
# the linear one.
#
# **What it means.** With weight decay, $C \to 0$: the encoder's top layer and the
# predictor become *balanced*, $W W^\top \to W_p^\top W_p / \alpha_p$. Their sizes are tied:
# the predictor cannot vanish while the encoder stays large, nor the other way round.

# %% [markdown]
# ## 6. Fixed points and the weight-decay threshold
#
# Where can the flow of section 4 come to rest with $W \ne 0$? Take one eigen-direction $u$
# of $X$ with eigenvalue $s$, isotropic augmentation $X' = \sigma^2 I$ (as in the default
# problem) and a rank-one mode $W = w\, v u^\top$, $W_p = p\, v v^\top$. At rest the target
# equals the online net ($\dot W_a = 0 \Rightarrow W_a = W$, whatever β), and the two
# remaining equations become
#
# $$p\,\big(s - p\,(s + \sigma^2)\big) = \eta, \qquad w^2 = p^2/\alpha_p$$
#
# (the second is $C = 0$ from section 5). The first is a quadratic in $p$ with real roots
#
# $$p_\pm = \frac{s \pm \sqrt{s^2 - 4\eta (s + \sigma^2)}}{2 (s + \sigma^2)}
# \quad\text{only if}\quad \eta \le \eta^*(s) = \frac{s^2}{4 (s + \sigma^2)} .$$
#
# So a direction of the data can survive only if the weight decay is below its threshold
# $\eta^*(s)$, and **everything collapses once $\eta > \eta^*(s_{\max})$** (0.4 here). Below
# the threshold the collapsed state $w = p = 0$ is still a fixed point too, so whether a
# mode survives also depends on where training starts and how fast the predictor moves.
# The prediction for a surviving mode is $w = p_+/\sqrt{\alpha_p}$; with $d = 4$ output
# dimensions, at most the 4 strongest eligible modes survive. `linear_byol.regime_grid`
# integrates (Euler, dt = 0.05) up to $T = 200$ over a grid of η × α_p and returns
# $\|W(T)\|_F$.

# %%
sigma2 = 0.5
etas = np.round(np.arange(0.0, 0.501, 0.025), 3)
alphas = [0.3, 1.0, 3.0, 10.0]
grid = linear_byol.regime_grid(etas, alphas, T=200.0)


def predicted_norm(eta, alpha_p, s=s, sigma2=sigma2, d=4):
    """||W|| at the fixed point: the d strongest modes with a real root p_+."""
    disc = s ** 2 - 4 * eta * (s + sigma2)
    p_plus = (s[disc >= 0] + np.sqrt(disc[disc >= 0])) / (2 * (s[disc >= 0] + sigma2))
    return float(np.linalg.norm(np.sort(p_plus)[::-1][:d] / np.sqrt(alpha_p)))


fig, ax = plt.subplots(figsize=(6.4, 3.2))
fine = np.linspace(0.001, 0.5, 400)
for k, a in enumerate(alphas):
    ax.plot(etas, grid[:, k], "o", ms=3, color=f"C{k}", label=f"α_p = {a}")
    ax.plot(fine, [predicted_norm(e, a) for e in fine], "-", lw=0.8, color=f"C{k}")
for e_star in s ** 2 / (4 * (s + sigma2)):
    ax.axvline(e_star, color="0.6", lw=0.6, ls="--")
ax.set(xlabel="weight decay η", ylabel="||W(200)||", ylim=(-0.1, 2.8),
       title="dots: regime_grid; lines: fixed-point prediction; dashed: η*(s_j)")
ax.legend(fontsize=7)
fig.tight_layout()
print("thresholds eta*(s_j):", np.round(s ** 2 / (4 * (s + sigma2)), 4))

# %% [markdown]
# **What to notice.** Past $\eta^*(s_{\max}) = 0.4$ every run collapses, whatever the
# predictor's speed. Each dashed line is a mode's threshold; the predicted norm drops a step
# at each. With the fastest predictor (α_p = 10) the simulations sit on the prediction at
# every η > 0. Slower predictors fall below it: α_p = 3 and 1 lose a mode here and there, and
# α_p = 0.3 collapses completely from η = 0.2 on although modes are still eligible, because
# the encoder shrinks under weight decay before the slow predictor grows large enough to hold
# it (near $w = p = 0$ a mode moves as $\dot w \approx (p s - \eta) w$); at small η it is
# also still converging at $T = 200$. At η = 0 nothing balances $W$ and $W_p$ ($C$ is
# conserved), so the fixed point does not fix $\|W\|$ and the dots there are off the lines.
# The threshold is a necessary condition for survival; the predictor's speed decides the
# basin.

# %% [markdown]
# ## 7. DirectPred
#
# If the predictor matters through its eigen-structure, can it be *set* instead of
# learned? DirectPred (Tian, Chen & Ganguli 2021) keeps a running average of the
# correlation of the predictor's inputs, $F \leftarrow \rho F + (1 - \rho)\,\mathbb E[z
# z^\top]$, diagonalises it, $F = U \mathrm{diag}(s) U^\top$, and sets
#
# $$W_p = U\, \mathrm{diag}(p)\, U^\top,\qquad p_j = \sqrt{s_j / \max_k s_k} + \epsilon ,$$
#
# with no gradient on $W_p$ (`BYOLConfig(directpred=True)`; `minissl.directpred_weights`
# computes this map). First, how does a gradient-trained linear predictor relate to $F$?
# `experiments.predictor_alignment` trains one (no BN, α_p = 10, 1000 steps) and measures
# with `minissl.eigen_alignment` whether $F$'s eigenvectors are eigenvectors of $W_p$.

# %%
al, _, h = experiments.predictor_alignment(src, base, steps=1000, lr=0.1, predictor_lr=10.0,
                                           log_every=1000, **no_bn)
print("cos(u_j, W_p u_j), eigenvectors of F by eigenvalue:", np.round(al["cosines"], 2))
_, h_dp = minissl.train_byol(src, base, steps=1000, lr=0.1, directpred=True, log_every=1000,
                             **no_bn)
r = h_dp.records[-1]
print(f"DirectPred (no BN): effective rank {r['effective_rank']:.2f}, std·√d {r['std']:.3f}")

fig, ax = plt.subplots(figsize=(5.2, 2.8))
j = np.arange(1, 9)
ax.bar(j - 0.2, al["p"][:8] / al["p"][0], 0.4, label="trained $W_p$: $p_j/p_1$")
ax.bar(j + 0.2, al["p_directpred"][:8], 0.4, label=r"DirectPred: $\sqrt{s_j/s_1}$")
ax.set(xlabel="eigenvector j of F", title="predictor eigenvalues in F's eigenbasis")
ax.legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# **What to notice.** The trained predictor's eigenvectors line up with $F$'s on the
# leading directions, which carry the 8 clusters (cosine 1.00 for the first seven, 0.89 for
# the eighth), and not on the rest, where its eigenvalues are near zero: the structure
# DirectPred builds in. Its eigenvalues are ordered
# roughly like DirectPred's but flatter than $\sqrt{s_j/s_1}$ here. DirectPred itself, with no
# predictor training at all, does not collapse (rank above 9).
#
# ## Exercises
#
# **Exercise 1 (EMA without a predictor).** In section 2 train the "no predictor, no BN"
# network with a slow target, `ema=0.99`, for 1000 steps (`steps=1000, log_every=100`).
# Does the EMA prevent collapse?

# %% [answer]
# No, it only slows it down. The effective rank is about 5.7 after 100 steps and falls
# steadily: 3.8 at step 300, 2.5 at step 1000 (std·√d from 0.42 to 0.19), while the run with
# `ema=0` collapses more than twice as fast (rank 2.3 at step 100, 1.1 at step 300). A slow target delays the collapse
# but does not remove the collapsed minimum; the predictor does something the EMA cannot.
#
# ```python
# _, h = minissl.train_byol(src, base, predictor="none", ema=0.99, steps=1000,
#                           log_every=100, **no_bn)
# print([round(r, 2) for r in h["effective_rank"]])
# ```

# %% [markdown]
# **Exercise 2 (a frozen target).** In section 5, what happens to $C(t)$ with β = 0 (the
# target never moves from $W_a(0)$) and η = 0.1?

# %% [answer]
# It still decays exactly as $e^{-0.2 t}$: the target enters $\dot W$ and $\dot W_p$ only
# through $R$, and $R$ cancels in $\dot C$. (The dynamics themselves are quite different
# with a frozen target, which no longer follows $W$; the balance between encoder and
# predictor is not.)
#
# ```python
# t, Ws, Wps, _ = linear_byol.integrate(W0, Wp0, Wa0, X, Xp, 15.0, alpha_p=1.0, beta=0.0, eta=0.1)
# C0 = invariant(W0, Wp0, 1.0)
# print(max(np.linalg.norm(invariant(W, Wp, 1.0) - np.exp(-0.2 * tt) * C0)
#           for tt, W, Wp in zip(t, Ws, Wps)) / np.linalg.norm(C0))      # ~1e-11
# ```

# %% [markdown]
# **Exercise 3 (stronger augmentation).** Make the augmentation three times stronger,
# $X' = 1.5\,I$ (`problem=(W0, Wp0, Wa0, X, 1.5 * np.eye(6))` in `regime_grid`). Where is
# the collapse threshold now, and does η = 0.3 still leave a surviving mode?

# %% [answer]
# $\eta^*(s_{\max}) = 2^2 / (4\,(2 + 1.5)) \approx 0.286$, down from 0.4: stronger
# augmentation makes the data's directions harder to keep. At η = 0.3 every run collapses,
# for every α_p; at η = 0.28 the fast predictors (α_p = 3, 10) still keep the top mode
# ($\|W\| \approx 0.19$ and $0.10$) while α_p = 1 has already collapsed.
#
# ```python
# print(linear_byol.regime_grid([0.28, 0.3], [1.0, 3.0, 10.0],
#                               problem=(W0, Wp0, Wa0, X, 1.5 * np.eye(6))))
# ```
