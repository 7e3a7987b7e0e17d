"""Notebook 1 of the minissl course: backprop by hand (source of 01_backprop_by_hand.ipynb).

Build the notebook with ``python docs/course/refresh.py 01``.
"""
# %% [markdown]
# # 1 · Backprop by hand: a two-layer dual network
#
# *minissl course, notebook 1 of 6 —
# [next: the covariance operator](02_covariance_operator.ipynb) ·
# [course index](README.md)*
#
# Self-supervised learning trains a network by comparing its outputs on **views** of the
# data: two augmentations of one image should land close together, views of different
# images far apart. Tian, Yu, Chen & Ganguli (2020) analyse what this does to the weights of
# a deep ReLU network, one gradient step at a time. Before the theory, this notebook does
# one such step by hand:
#
# 1. the forward pass of a two-layer bias-free ReLU network;
# 2. the same network applied to an anchor, a positive and negatives (the *dual* network);
# 3. the contrastive loss written as a function of distances only;
# 4. the backward pass written out in NumPy, checked against `minissl` and against finite
#    differences;
# 5. what the ReLU gates do to the gradient;
# 6. how the gradient splits over the two views and the negatives;
# 7. many such steps: training, and the loss of a collapsed network.
#
# Everything uses `minissl`'s public API, NumPy and matplotlib, and takes a few seconds of
# CPU time.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minissl
from minissl import gradcheck, losses

plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.4, 3.0), "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3})
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The network
#
# A batch is a matrix with one sample per row (`x` is `(N, n_0)`), and layer `l` has a
# weight matrix `W_l` of shape `(n_l, n_{l-1})`. The network has no biases:
#
# $$f_0 = x,\qquad g_1 = W_1 f_0,\qquad f_1 = \mathrm{relu}(g_1),\qquad f_2 = g_2 = W_2 f_1 .$$
#
# In batch-major NumPy, `g1 = x @ W1.T`. The top layer is linear. `minissl.ReLUNet` builds
# exactly this network (`sizes = [n_0, n_1, n_2]`); let us redo its forward pass by hand.

# %%
net = minissl.ReLUNet([4, 6, 3], seed=0)          # n_0 = 4 inputs, 6 hidden units, 3 outputs
W1, W2 = net.weights                               # views of the net's own arrays
print("W1", W1.shape, " W2", W2.shape)

x = np.random.default_rng(0).standard_normal((5, 4))   # a batch of N = 5 inputs
g1 = x @ W1.T                                      # (5, 6) pre-activations
f1 = np.maximum(g1, 0)                             # (5, 6) ReLU
f2 = f1 @ W2.T                                     # (5, 3) output
print("max |by hand - net.forward| =", np.abs(f2 - net.forward(x)).max())

# %% [markdown]
# A ReLU multiplies each pre-activation by a **gate**, 1 if it is positive and 0 if not:
# `relu(g) = D(x) g` with `D(x) = diag(g_1(x) > 0)`. So
#
# $$f_2(x) = W_2\, D_1(x)\, W_1\, x ,$$
#
# a *linear* map of `x` as long as the gates do not change. The gates depend only on the
# signs of `g_1`, and without biases multiplying `x` by a positive number changes no sign:
# the network is positively homogeneous, `f(a x) = a f(x)` for `a > 0`.

# %%
gates = g1 > 0
print("gates of the 5 inputs (rows) x 6 hidden units (columns):\n", gates.astype(int))
print("f(3x) == 3 f(x):", np.allclose(net.forward(3 * x), 3 * net.forward(x)))

# %% [markdown]
# ## 2. Views and the dual network
#
# The data source `minissl.GaussianClusters` draws a few cluster centres once; a *sample*
# is a centre, and a *view* of it is the centre plus Gaussian noise (the augmentation).
# `triples(N, rng)` returns, for N anchors, the anchor view `x`, a second view `x_+` of the
# same sample (the positive) and H views of independent samples (the negatives, `(N, H, n_0)`).
#
# The same network, with the **same weights**, embeds all of them: this is the dual (or
# "twin") network of the paper's title. Its outputs are compared through half squared
# distances
#
# $$r_+ = \tfrac12\|f(x) - f(x_+)\|^2,\qquad r_k = \tfrac12\|f(x) - f(x_k^-)\|^2,\quad k = 1..H .$$

# %%
src = minissl.GaussianClusters(n_clusters=3, dim=4, noise=0.3, negatives=2, seed=0)
x, x_pos, x_neg = src.triples(5, rng=1)            # (5, 4), (5, 4), (5, 2, 4)
N, H, n0 = x_neg.shape

z = net.forward(x)                                 # (5, 3)
z_pos = net.forward(x_pos)                         # (5, 3)
z_neg = net.forward(x_neg.reshape(N * H, n0)).reshape(N, H, -1)   # (5, 2, 3)
r_pos, r_neg = losses.distances(z, z_pos, z_neg)   # (5,), (5, 2)
print("r_+ per anchor:", r_pos)
print("r_k per anchor and negative:\n", r_neg)

# %% [markdown]
# ## 3. The loss is a function of the distances
#
# Every contrastive loss in `minissl` is written once as a function of `(r_+, r_1..r_H)`
# (τ is a temperature, `r_0` a margin):
#
# | loss | per anchor |
# |---|---|
# | simple | $L = r_+ - r_1$ |
# | soft triplet | $L = \tau \log\left(1 + e^{(r_+ - r_1 + r_0)/\tau}\right)$ |
# | InfoNCE | $L = -\tau \log \dfrac{e^{-r_+/\tau}}{e^{-r_+/\tau} + \sum_k e^{-r_k/\tau}}$ |
#
# and each returns its value and its two partial derivatives. Two facts carry the whole
# analysis. First, all three satisfy
#
# $$\frac{\partial L}{\partial r_+} = -\sum_k \frac{\partial L}{\partial r_k} \;\ge\; 0 ,$$
#
# a pull on the positive pair balanced by a push on the negatives. Second, the **pair
# weights** $\xi_k = -\partial L/\partial r_k$ say how hard each negative is pushed: 1 for the
# simple loss, a sigmoid for soft triplet, a softmax probability for InfoNCE.

# %%
L, dL_dpos, dL_dneg = losses.infonce(r_pos, r_neg, tau=0.5)
print("L per anchor:        ", L)
print("dL/dr_+:             ", dL_dpos)
print("-sum_k dL/dr_k:      ", -dL_dneg.sum(axis=1))

# %% [markdown]
# `minissl.experiments.loss_curves` evaluates the three losses and their pair weights while one
# distance moves. Here the negative distance `r_-` varies, with `r_+ = 0.5` and τ = 0.5
# (InfoNCE with H = 4 negatives, all at distance `r_-`).

# %%
from minissl.experiments import loss_curves

t, curves = loss_curves("r_neg", r_pos=0.5, tau=0.5, H=4, hi=4.0)
fig, (a1, a2) = plt.subplots(1, 2)
for name, (Lc, dpos, xi) in curves.items():
    a1.plot(t, Lc, label=name)
    a2.plot(t, xi, label=name)
a1.set(xlabel="$r_-$", ylabel="loss $L$", title="loss")
a2.set(xlabel="$r_-$", ylabel=r"$\xi = -\partial L / \partial r_-$", title="pair weight")
a2.legend()
fig.tight_layout()

# %% [markdown]
# **What to notice.** The simple loss is unbounded below and pushes every negative with
# weight 1, however far it already is. Soft triplet and InfoNCE stop pushing negatives that
# are already far (their weights decay like $e^{-r_-/\tau}$): the gradient concentrates on
# the negatives that are still close. InfoNCE's weight is the softmax probability of one
# negative among the positive and the others, so the four negatives share it.

# %% [markdown]
# ## 4. The backward pass, by hand
#
# The batch loss is the **mean** over the N anchors. Write $c_+ = \frac1N \partial L/\partial
# r_+$ and $c_k = \frac1N \partial L/\partial r_k$ per anchor. Since
# $\partial r_+/\partial z = z - z_+$,
#
# $$\frac{\partial L}{\partial z} = c_+ (z - z_+) + \sum_k c_k (z - z_k),\qquad
# \frac{\partial L}{\partial z_+} = -c_+ (z - z_+),\qquad
# \frac{\partial L}{\partial z_k} = -c_k (z - z_k).$$
#
# Stack all rows that went through the network, `X = [x; x_+; x_neg]` and their output
# gradients `δ_2 = ∂L/∂Z`, and go down the layers:
#
# $$dW_2 = \delta_2^\top f_1,\qquad \delta_1 = (\delta_2 W_2) \odot \mathbb 1[g_1 > 0],
# \qquad dW_1 = \delta_1^\top X .$$
#
# The only place the nonlinearity enters is the gate $\mathbb 1[g_1 > 0]$.

# %%
tau = 0.5
X = np.concatenate([x, x_pos, x_neg.reshape(N * H, n0)])       # (N (2 + H), n_0) = (20, 4)


def loss_by_hand(W1, W2):
    """Forward pass and InfoNCE loss, by hand; returns the loss and what backward needs."""
    g1 = X @ W1.T
    f1 = np.maximum(g1, 0)
    Z = f1 @ W2.T
    z, zp, zn = Z[:N], Z[N:2 * N], Z[2 * N:].reshape(N, H, -1)
    rp, rn = losses.distances(z, zp, zn)
    L, d_pos, d_neg = losses.infonce(rp, rn, tau)
    return L.mean(), (g1, f1, z, zp, zn, d_pos / N, d_neg / N)

# %%
def backward_by_hand(W1, W2, cache, gate=True):
    g1, f1, z, zp, zn, c_pos, c_neg = cache
    dz = c_pos[:, None] * (z - zp) + (c_neg[:, :, None] * (z[:, None] - zn)).sum(axis=1)
    dzp = -c_pos[:, None] * (z - zp)
    dzn = -c_neg[:, :, None] * (z[:, None] - zn)
    d2 = np.concatenate([dz, dzp, dzn.reshape(N * H, -1)])    # (20, 3) = dL/dZ
    dW2 = d2.T @ f1                                            # (3, 6)
    d1 = d2 @ W2                                               # (20, 6)
    if gate:
        d1 = d1 * (g1 > 0)                                     # the ReLU gates
    dW1 = d1.T @ X                                             # (6, 4)
    return dW1, dW2


value, cache = loss_by_hand(W1, W2)
dW1, dW2 = backward_by_hand(W1, W2, cache)
print(f"loss by hand {value:.6f}")

# %% [markdown]
# Three independent checks. `minissl` computes the same loss with
# `minissl.contrastive_loss` (embeddings in, loss and embedding gradients out) and the same
# weight gradients with `net.backward`. And `minissl.gradcheck.numerical_gradient` perturbs
# every weight by ±ε and takes central differences of the loss, which knows nothing about
# our formulas; `gradcheck.gradient_error` is the largest entry-wise difference relative to
# the largest entry.

# %%
Z = net.forward(X)
value_lib, (dz, dzp, dzn) = minissl.contrastive_loss(Z[:N], Z[N:2 * N],
                                                      Z[2 * N:].reshape(N, H, -1),
                                                      loss="infonce", tau=tau)
dW1_lib, dW2_lib = net.backward(np.concatenate([dz, dzp, dzn.reshape(N * H, -1)]))
numeric = gradcheck.numerical_gradient(lambda: loss_by_hand(W1, W2)[0], [W1, W2])

print(f"loss: by hand {value:.12f}   minissl {value_lib:.12f}")
print(f"by hand vs net.backward:         {gradcheck.gradient_error([dW1, dW2], [dW1_lib, dW2_lib]):.1e}")
print(f"by hand vs finite differences:   {gradcheck.gradient_error([dW1, dW2], numeric):.1e}")
no_gate = backward_by_hand(W1, W2, cache, gate=False)
print(f"without the gate (a wrong backward): {gradcheck.gradient_error(list(no_gate), numeric):.1e}")

# %% [markdown]
# The hand-written backward agrees with the library to rounding and with finite
# differences to about 1e-9 (the error of the central differences themselves). The negative
# control matters: a backward that forgets the gate is wrong by order one, so the check is
# able to fail.

# %% [markdown]
# ## 5. What the gates do to the gradient
#
# Row `i` of $dW_1$ is
#
# $$dW_1[i, :] = \sum_{\text{rows } b} \delta_1[b, i]\, X[b, :],\qquad \delta_1[b, i] =
# \mathbb 1[g_1[b, i] > 0]\,(\delta_2 W_2)[b, i] :$$
#
# hidden unit `i` learns only from the inputs on which it is **on**. Each unit sees its own
# subset of the batch; a unit that is off on every input gets no gradient at all. The
# gradient that reaches $W_1$ is the top-down signal $\delta_2$ carried through the
# *Jacobian* $J_1(x) = \partial f_2/\partial g_1 = W_2 D_1(x)$, one per input
# (`net.jacobians`).

# %%
g1_all = X @ W1.T
on = g1_all > 0
J1 = net.jacobians(X)[0]                          # (20, n_2, n_1): J_1 of every row
print("J_1(x) == W2 * gate(x) for every row:",
      np.allclose(J1, W2[None] * on[:, None, :]))
print("fraction of the 20 rows on which each unit is on:", on.mean(axis=0))

delta2 = np.concatenate([dz, dzp, dzn.reshape(N * H, -1)])
contrib = np.abs((delta2 @ W2) * on)              # |delta_1[b, i]|, zero where the gate is off

fig, (a1, a2) = plt.subplots(1, 2, figsize=(6.4, 3.4))
a1.imshow(on, cmap="Greys", aspect="auto", interpolation="nearest")
a1.set(ylabel="row b of X", title="gate 1[g_1 > 0] (black: on)")
for y in (N - 0.5, 2 * N - 0.5):                 # anchors | positives | negatives
    a1.axhline(y, color="C1")
im = a2.imshow(contrib, cmap="viridis", aspect="auto", interpolation="nearest")
a2.set(title=r"$|\delta_1[b, i]|$: who teaches unit i")
fig.colorbar(im, ax=a2, label=r"$|\delta_1[b, i]|$")
for ax in (a1, a2):
    ax.set(xlabel="hidden unit i", xticks=range(on.shape[1]), yticks=range(0, len(X), 5))
    ax.grid(False)
fig.tight_layout()

# %% [markdown]
# **What to notice.** Left: rows 0–4 are anchors, 5–9 positives, 10–19 negatives (orange
# lines); each hidden unit is on for its own subset of them, from 20% to 90% of the rows. Right: the signal that reaches
# unit `i` is exactly zero wherever its gate is off. Units learn from different subsets of
# the data, which is how different units can come to specialise.

# %% [markdown]
# ## 6. The dual structure: one gradient, three branches
#
# Because the weights are shared, the weight gradient is a sum over the branches that used
# them: $dW_1 = \delta_1^\top X$ splits into the anchor rows, the positive rows and the
# negative rows, each passed through **its own** gates. For the positive pair the two
# output gradients are equal and opposite, $\pm c_+ (z - z_+)$; if the anchor and its
# positive had the same gates $D$, their two contributions would combine into
# $c_+ D W_2^\top W_2 D W_1 (x - x_+)(x - x_+)^\top$, a term that depends only on the
# difference of the two views. This sum of per-view, per-gate terms is what the next
# notebook turns into the **covariance operator**.

# %%
d1_full = (delta2 @ W2) * on                      # (20, 6)
parts = {"anchor rows": d1_full[:N].T @ X[:N],
         "positive rows": d1_full[N:2 * N].T @ X[N:2 * N],
         "negative rows": d1_full[2 * N:].T @ X[2 * N:]}
print("sum of the three parts == dW1:", np.allclose(sum(parts.values()), dW1))

fig, ax = plt.subplots(figsize=(5, 2.4))
ax.barh(list(parts), [np.linalg.norm(p) for p in parts.values()], color=["C0", "C2", "C3"])
ax.set(xlabel=r"$\|dW_1$ part$\|_F$", title="where the first layer's gradient comes from")
fig.tight_layout()

# %% [markdown]
# ## 7. Many steps: training
#
# `minissl.train` repeats exactly this step (forward of all views, the loss, `net.backward`,
# an SGD update) on fresh batches. With InfoNCE the positive distance stays small while the
# negatives are pushed apart, until the pair weights of far negatives vanish and the loss
# levels off.

# %%
net_t = minissl.ReLUNet([4, 6, 3], seed=0)
src4 = minissl.GaussianClusters(n_clusters=3, dim=4, noise=0.3, negatives=4, seed=0)
hist = minissl.train(net_t, src4, loss="infonce", tau=0.5, lr=0.1, steps=300, batch_size=32,
                     seed=2)
fig, (a1, a2) = plt.subplots(1, 2)
a1.plot(hist["loss"], lw=0.8)
a1.axhline(minissl.collapsed_loss("infonce", tau=0.5, H=4), ls="--", c="k", lw=0.8,
           label="collapsed embedding")
a1.set(xlabel="step", title="InfoNCE loss")
a1.legend()
a2.plot(hist["r_pos"], lw=0.8, label="$r_+$")
a2.plot(hist["r_neg"], lw=0.8, label="$r_-$")
a2.set(xlabel="step", title="mean distances")
a2.legend()
fig.tight_layout()
print(f"loss {hist['loss'][0]:.3f} -> {hist['loss'][-1]:.3f};  "
      f"r_+ {hist['r_pos'][-1]:.3f}, r_- {hist['r_neg'][-1]:.3f} at the end")

# %% [markdown]
# The dashed line is the loss of a **collapsed** network, one that maps every input to
# the same point (`minissl.collapsed_loss`: τ log(1 + H)). The untrained network starts
# right there, because its embeddings are small and nearly equal; contrastive training moves
# away from it because the negatives push; notebook 4 asks why BYOL, which has no negatives, does
# not fall into it.
#
# ## Exercises
#
# Each exercise changes one thing above. Predict, then run it, then open the answer.
#
# **Exercise 1 (a dead unit).** Set the first row of $W_1$ to zero (`W1[0] = 0`) and
# recompute `dW1, dW2`. What is the gradient of that row, and of column 0 of $W_2$? Will
# gradient descent ever bring the unit back?

# %% [answer]
# Both are exactly zero. With $W_1[0] = 0$ the pre-activation $g_1[b, 0] = 0$ for every
# input, so the gate $\mathbb 1[g > 0]$ is 0 and $\delta_1[:, 0] = 0$, hence $dW_1[0] = 0$;
# and $f_1[:, 0] = 0$, so $dW_2[:, 0] = \delta_2^\top f_1[:, 0] = 0$. The unit is a fixed
# point of gradient descent and stays dead forever (weight decay would only keep it at 0).
# A unit that is merely *off on this batch* recovers when other data turn it on, but a bias-free
# unit with zero weights is off for every input.
#
# ```python
# W1_dead = W1.copy(); W1_dead[0] = 0
# _, c = loss_by_hand(W1_dead, W2)
# g_1, g_2 = backward_by_hand(W1_dead, W2, c)
# print(np.abs(g_1[0]).max(), np.abs(g_2[:, 0]).max())     # 0.0 0.0
# ```

# %% [markdown]
# **Exercise 2 (temperature).** In section 3 set `tau=0.05` instead of 0.5 (InfoNCE, H = 4,
# `r_+ = 0.5`). Which negatives still get a pair weight of any size?

# %% [answer]
# Only the negatives that are about as close as the positive, or closer. Relative to the
# positive, a negative at distance $r_-$ gets the share $e^{-(r_- - r_+)/\tau}$; with τ = 0.05
# that is $e^{-10} \approx 5\cdot10^{-5}$ for a negative at `r_- = 1`, twice the positive's
# distance. The InfoNCE weight is about 0.25 up to `r_- = 0.4`, 0.2 at `r_- = r_+ = 0.5`,
# 0.017 at 0.7 and 5e-5 at 1. Small τ makes InfoNCE a *hard-negative* loss: all the push
# goes to the few negatives that are closer than the positive.
#
# ```python
# t, c = loss_curves("r_neg", r_pos=0.5, tau=0.05, H=4, hi=4.0)
# print([f"{v:.1e}" for v in np.interp([0.4, 0.5, 0.7, 1.0], t, c["infonce"][2])])
# # ['2.4e-01', '2.0e-01', '1.7e-02', '4.5e-05']
# ```

# %% [markdown]
# **Exercise 3 (scale).** Multiply every input by 2 (`X = 2 * X` before calling
# `loss_by_hand`). What happens to the gates and to the distances? For the simple loss the
# new loss is exactly 4 times the old one; what is InfoNCE's loss at τ = 0.5 on `2X` equal to?

# %% [answer]
# The gates do not change (a positive factor changes no sign of $g_1 = W_1 x$), every output
# doubles and every distance quadruples. The simple loss $r_+ - r_1$ is therefore multiplied
# by 4, for every W, so its gradients are multiplied by 4 too. InfoNCE sees the distances
# only through $r/\tau$: $-\tau \log \mathrm{softmax}(-4r/\tau) = 4 \cdot
# \left(-\tfrac\tau4 \log \mathrm{softmax}(-r/\tfrac\tau4)\right)$, so its loss on `2X` at
# τ = 0.5 is exactly 4 times its loss on `X` at τ = 0.125. Scaling the inputs (or the
# weights) is the same as lowering the temperature: for a bias-free ReLU net, the scale of the
# embedding and τ are one parameter.
#
# ```python
# X0 = X.copy()
# X = 2 * X0;  L_2x = loss_by_hand(W1, W2)[0]
# X = X0; tau = 0.125;  L_low = loss_by_hand(W1, W2)[0]
# tau = 0.5
# print(L_2x, 4 * L_low)         # equal
# ```
