"""Notebook 2 of the minissl course: the covariance operator (source of
02_covariance_operator.ipynb). Build it with ``python docs/course/refresh.py 02``.
"""
# %% [markdown]
# # 2 · The covariance operator
#
# *minissl course, notebook 2 of 6 —
# [previous: backprop by hand](01_backprop_by_hand.ipynb) ·
# [next: latent trees and luck](03_latent_trees_and_luck.ipynb) ·
# [course index](README.md)*
#
# Notebook 1 computed one gradient step by hand. Tian, Yu, Chen & Ganguli (2020) show that,
# averaged over the data, the step of every layer of a bias-free ReLU network has a simple
# form (their Theorem 1). Three objects, each built in this notebook, enter it:
#
# * the **connection** $K_l(x)$: a matrix made of the activation entering layer $l$ and the
#   Jacobian from layer $l$ to the output, both at input $x$, such that the output is
#   $f_L(x) = K_l(x)^\top \mathrm{vec}(W_l)$ (section 1);
# * its **view average** $\bar K_l(x) = \mathbb E_{x' \sim \mathrm{aug}(x)}\big[K_l(x')\big]$,
#   the mean of $K_l$ over the augmented views $x'$ of one data sample $x$;
# * the **covariance over samples** $\mathbb V_x[\bar K_l] = \mathbb E_x\big[(\bar K_l(x) -
#   \mu)(\bar K_l(x) - \mu)^\top\big]$, $\mu = \mathbb E_x \bar K_l(x)$, a square matrix over
#   the entries of $W_l$ (section 2).
#
# For the simple loss $L = r_+ - r_-$ (notebook 1) the theorem says
#
# $$\mathbb E\left[\nabla_{\mathrm{vec}(W_l)} L\right] = -\,\mathrm{OP}_l\,\mathrm{vec}(W_l),
# \qquad \mathrm{OP}_l = 2\,\mathbb V_x\!\left[\bar K_l(x)\right] \succeq 0 ,$$
#
# so gradient descent moves each layer by $\Delta\,\mathrm{vec}(W_l) = \eta\,\mathrm{OP}_l\,
# \mathrm{vec}(W_l)$: a positive semi-definite matrix, the **covariance operator**, applied to
# the weights themselves. This notebook builds the pieces in NumPy, checks each against
# `minissl`, and checks each claim numerically:
#
# 1. the connection $K_l$ and reversibility $f_L = K_l^\top \mathrm{vec}(W_l)$;
# 2. the operator from its definition, and the theorem, **exactly**, on a small finite
#    population, with the cancellation that makes it work;
# 3. the spectrum of $\mathrm{OP}_l$;
# 4. training by the operator versus training by the gradient;
# 5. soft triplet and InfoNCE: the pair weights, and where their approximation departs from
#    the exact gradient.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minissl
from minissl import gradcheck

plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.4, 3.0), "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3})
np.set_printoptions(precision=4, suppress=True)


def rel(a, b):
    """Relative error ||a - b|| / ||b|| over a list of arrays (Frobenius)."""
    num = sum(np.sum((x - y) ** 2) for x, y in zip(a, b))
    return float(np.sqrt(num / sum(np.sum(y ** 2) for y in b)))


def cosine(a, b):
    return float(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b))

# %% [markdown]
# ## 1. The connection $K_l$ and reversibility
#
# Take the network of notebook 1, now with three layers. For an input $x$ write
# $J_l(x) = \partial f_L / \partial g_l$ for the top-down Jacobian (an $n_L \times n_l$
# matrix: the weights above layer $l$ with the ReLU gates of $x$) and $f_{l-1}(x)$ for the
# bottom-up activation entering layer $l$. Their outer product is the **connection**
#
# $$K_l(x)\big[i\, n_{l-1} + j,\ k\big] = J_l(x)[k, i]\; f_{l-1}(x)[j] ,\qquad
# K_l(x) \in \mathbb R^{(n_l n_{l-1}) \times n_L}$$
#
# (`vec` is row-major, NumPy's `ravel`). Two facts about it:
#
# * $K_l(x)^\top$ is the derivative $\partial f_L(x) / \partial\, \mathrm{vec}(W_l)$, for any
#   network;
# * for a **bias-free** ReLU network it also gives the output back,
#   $f_L(x) = K_l(x)^\top \mathrm{vec}(W_l)$ at every layer (*reversibility*): since
#   $\mathrm{relu}(g) = D g$, $f_L = J_l(x)\, g_l = J_l(x) W_l f_{l-1}(x)$.
#
# In code `layer` is the 0-based index into `net.weights` (the paper's $W_l$ is
# `net.weights[l - 1]`). Let us build $K_l$ for each row of a batch from the two factors:
# the activations $f_{l-1}$ by a forward pass written out, the Jacobians $J_l$ from
# `net.jacobians` (notebook 1 checked $J_1 = W_2 D_1$), and compare with
# `minissl.connection(net, x, layer)`, which returns the same `(N, P, n_L)` array.

# %%
net = minissl.ReLUNet([6, 8, 5, 3], seed=0)
x = np.random.default_rng(0).standard_normal((12, 6))
out = net.forward(x)
fs = [x]                                                   # f_0, f_1, f_2: the inputs of each layer
for W in net.weights[:-1]:
    fs.append(np.maximum(fs[-1] @ W.T, 0))
Js = net.jacobians(x)                                      # J_l(x): (12, n_L, n_l) per layer
for l, W in enumerate(net.weights):
    K = np.einsum("nki,nj->nijk", Js[l], fs[l]).reshape(len(x), W.size, -1)   # (12, P, n_L)
    f_back = np.einsum("npk,p->nk", K, W.ravel())          # K^T vec(W) for every row
    print(f"layer {l}: W {W.shape}, K {K.shape}, max |K - minissl.connection| = "
          f"{np.abs(K - minissl.connection(net, x, l)).max():.0e}, "
          f"max |K^T vec(W) - f_L| = {np.abs(f_back - out).max():.0e}")

# %% [markdown]
# And since $K_l^\top$ is the derivative, the backward pass of notebook 1 is
# $dW_l = \sum_n K_l(x_n)\, \partial L/\partial f_L(x_n)$:

# %%
dout = np.random.default_rng(1).standard_normal(out.shape)   # any output gradient
net.forward(x)
grads = net.backward(dout)
via_K = [np.einsum("npk,nk->p", minissl.connection(net, x, l), dout).reshape(W.shape)
         for l, W in enumerate(net.weights)]
print("net.backward vs sum_n K_n dout_n:", f"{rel(grads, via_K):.1e}")

# %% [markdown]
# ## 2. The operator, and the theorem exactly on a finite population
#
# To check an expectation exactly, take a finite **population**: N samples with M views
# each, $x_{nm}$, every one equally likely. Then the view average and the covariance over
# samples are finite sums. With $K_{nm} = K_l(x_{nm})$,
#
# $$\bar K_n = \frac1M \sum_m K_{nm},\qquad \mu = \frac1N \sum_n \bar K_n,\qquad
# \mathrm{OP}_l = 2\,\mathbb V[\bar K] = \frac 2N \sum_n (\bar K_n - \mu)(\bar K_n - \mu)^\top ,$$
#
# where each product of two $(P, n_L)$ matrices contracts the output index $k$, so
# $\mathrm{OP}_l$ is $(P, P)$. In NumPy that is a few lines; `minissl.covariance_operator`
# should give the same matrix.

# %%
N, M = 4, 3
g = np.random.default_rng(2)
views = g.standard_normal((N, 1, 6)) + 0.5 * g.standard_normal((N, M, 6))   # (N, M, n_0)


def operator_by_hand(net, views, l):
    """OP_l = (2/N) sum_n (Kbar_n - mu)(Kbar_n - mu)^T, from the connection of every view."""
    N, M, n0 = views.shape
    K = minissl.connection(net, views.reshape(N * M, n0), l)       # (N M, P, n_L): K_nm
    Kbar = K.reshape(N, M, *K.shape[1:]).mean(axis=1)             # (N, P, n_L): view average
    Kc = Kbar - Kbar.mean(axis=0)                                 # Kbar_n - mu
    return 2 / N * np.einsum("npk,nqk->pq", Kc, Kc)               # (P, P)


for l in range(net.depth):
    OP = operator_by_hand(net, views, l)
    print(f"layer {l}: OP {OP.shape}, max |by hand - minissl.covariance_operator| = "
          f"{np.abs(OP - minissl.covariance_operator(net, views, l)).max():.0e}")

# %% [markdown]
# **Why the theorem holds: a cancellation.** One draw of the simple loss is a combination
# $(i, a, b, j, c)$: anchor $x_{ia}$, positive $x_{ib}$ (same sample, any view, $b = a$
# included), negative $x_{jc}$ (any sample, **$j = i$ included**, as in $\mathbb E_x
# \mathbb E_{x'}$), any view. There are $N^2 M^3$ combinations and the loss is their mean.
# Write $w = \mathrm{vec}(W_l)$. Since $f(x) = K(x)^\top w$,
#
# $$\nabla_w \tfrac12\|f(x) - f(y)\|^2 = (K(x) - K(y))(K(x) - K(y))^\top w .$$
#
# Average this over the combinations. With $S_n = \frac1M \sum_m K_{nm} K_{nm}^\top$ (the
# second moment of $K$ over the views of sample $n$), the positive pair's views $a, b$ are
# independent given $i$, and the negative's sample $j$ is independent of $i$:
#
# $$\begin{aligned}
# \text{positive: } \operatorname{mean}\,(K_{ia} - K_{ib})(K_{ia} - K_{ib})^\top
#   &= \tfrac2N \textstyle\sum_i S_i \;-\; \tfrac2N \sum_i \bar K_i \bar K_i^\top \\
# \text{negative: } \operatorname{mean}\,(K_{ia} - K_{jc})(K_{ia} - K_{jc})^\top
#   &= \tfrac2N \textstyle\sum_i S_i \;-\; 2\,\mu\mu^\top
# \end{aligned}$$
#
# The second moments $S_i$, which depend on every view separately, are the **same** in both
# lines, so they cancel in $\nabla(r_+ - r_-)$, leaving
# $-2\big(\tfrac1N \sum_i \bar K_i \bar K_i^\top - \mu\mu^\top\big) w = -2\,\mathbb V[\bar K]\,
# w = -\mathrm{OP}_l\, w$. They cancel only because $b$ and $j$ range over everything; the
# check after the next one drops $j = i$ and sees the identity change. Here are the two lines,
# enumerated against their formulas, at the first layer:

# %%
def second(D):
    """mean over the combinations t of D_t D_t^T, contracting the output index."""
    return np.einsum("tpk,tqk->pq", D, D) / len(D)


K = minissl.connection(net, views.reshape(N * M, 6), 0).reshape(N, M, -1, 3)   # (N, M, P, n_L)
I, A, Bv, J, Cv = (k.ravel() for k in np.indices((N, M, M, N, M)))  # all N^2 M^3 combinations
S = np.einsum("nmpk,nmqk->npq", K, K) / M                            # S_n
Kbar = K.mean(axis=1)
mu = Kbar.mean(axis=0)
KK = np.einsum("npk,nqk->pq", Kbar, Kbar) / N                        # (1/N) sum_i Kbar_i Kbar_i^T
pos = second(K[I, A] - K[I, Bv])                                     # anchor - positive
neg = second(K[I, A] - K[J, Cv])                                     # anchor - negative
pos_formula = 2 * S.mean(axis=0) - 2 * KK
neg_formula = 2 * S.mean(axis=0) - 2 * mu @ mu.T
print(f"positive term: max |enumerated - formula| {np.abs(pos - pos_formula).max():.0e}")
print(f"negative term: max |enumerated - formula| {np.abs(neg - neg_formula).max():.0e}")
print(f"size of the cancelled part 2 mean S_i: {np.linalg.norm(2 * S.mean(0)):.2f},  "
      f"of OP: {np.linalg.norm(operator_by_hand(net, views, 0)):.2f},  "
      f"max |pos - neg + OP| {np.abs(pos - neg + operator_by_hand(net, views, 0)).max():.0e}")

# %% [markdown]
# The cancelled part is larger than what is left. Now the theorem itself, with nothing
# taken on trust: enumerate all combinations, compute the real loss with
# `minissl.contrastive_loss` and the real backward with `net.backward`, and compare with
# $-\mathrm{OP}_l\, \mathrm{vec}(W_l)$ from `operator_by_hand`.

# %%
def population(views, own_negative=True):
    """Every (anchor, positive, negative) combination (i, a, b, j, c) of a population."""
    N, M, _ = views.shape
    I, A, Bv, J, Cv = (k.ravel() for k in np.indices((N, M, M, N, M)))
    if not own_negative:                       # a deliberate change: negatives j != i only
        keep = I != J
        I, A, Bv, J, Cv = I[keep], A[keep], Bv[keep], J[keep], Cv[keep]
    return views[I, A], views[I, Bv], views[J, Cv]


def mean_gradient(net, triple, loss="simple", tau=1.0):
    """Gradient of the mean loss over the combinations, by the real forward and backward."""
    xa, xpos, xneg = triple
    T = len(xa)
    Z = net.forward(np.concatenate([xa, xpos, xneg]))
    _, (dz, dzp, dzn) = minissl.contrastive_loss(Z[:T], Z[T:2 * T], Z[2 * T:], loss, tau)
    return net.backward(np.concatenate([dz, dzp, dzn]))


grads = mean_gradient(net, population(views))
print(f"{N * N * M ** 3} combinations")
for l, W in enumerate(net.weights):
    predicted = -(operator_by_hand(net, views, l) @ W.ravel()).reshape(W.shape)
    print(f"layer {l}: relative error of -OP vec(W): {rel([grads[l]], [predicted]):.1e}")

# %% [markdown]
# Exact to rounding, at every layer, with ReLU gates that differ from view to view. The
# normalisation matters. Drop the negatives that come from the anchor's own sample
# ($j \ne i$) and the identity changes in an instructive way: the gradient becomes
# $\frac{N}{N-1}$ times $\mathrm{OP}_l$, i.e. the *unbiased* (sample) covariance:

# %%
grads_other = mean_gradient(net, population(views, own_negative=False))
for l, W in enumerate(net.weights):
    OP = operator_by_hand(net, views, l)
    predicted = -(OP @ W.ravel()).reshape(W.shape)
    print(f"layer {l}: vs -OP vec(W): {rel([grads_other[l]], [predicted]):.3f}   "
          f"vs -N/(N-1) OP vec(W): {rel([grads_other[l]], [N / (N - 1) * predicted]):.1e}")

# %% [markdown]
# From here on the library's operator is used. `minissl.covariance_update(net, views, layer)`
# computes the same $\mathrm{OP}_l\,
# \mathrm{vec}(W_l)$ without ever forming $K$ or $\mathrm{OP}$ (two passes through the
# Jacobians), which is what makes the operator usable for large layers.

# %%
for l, W in enumerate(net.weights):
    OP = minissl.covariance_operator(net, views, l)
    dW = minissl.covariance_update(net, views, l)                    # matrix-free
    print(f"layer {l}: explicit vs matrix-free {rel([dW], [(OP @ W.ravel()).reshape(W.shape)]):.1e}")

# %% [markdown]
# ## 3. The spectrum
#
# $\mathrm{OP}_l$ is a covariance matrix, so it is symmetric positive semi-definite, and it is
# a sum of $N$ centred terms of rank at most $n_L$ each, which sum to zero: its rank is at
# most $(N - 1)\, n_L$. Under the flow $\dot w = \mathrm{OP}\, w$ the component of $w$
# along an eigenvector with eigenvalue $\lambda$ grows like $e^{\lambda t}$ (while the
# operator stays put), so the top of the spectrum says which weight patterns training
# amplifies. `minissl.covariance_spectrum(net, views, layer, k)` returns the top `k`
# eigenpairs (Lanczos on the matrix-free product for large layers).

# %%
src = minissl.GaussianClusters(n_clusters=4, dim=6, noise=0.3, seed=0)
pop = src.views(8, 4, rng=3)                                          # N = 8, M = 4
fig, axes = plt.subplots(1, 3, figsize=(8, 2.6), sharey=True)
for l, ax in enumerate(axes):
    P = net.weights[l].size
    vals, _ = minissl.covariance_spectrum(net, pop, l, k=P)           # all P eigenvalues
    ax.semilogy(np.arange(1, P + 1), np.maximum(vals, 1e-18), ".", ms=4)
    ax.axvline((8 - 1) * net.sizes[-1], color="C3", lw=0.8, label="$(N-1)\\,n_L$")
    ax.set(title=f"layer {l}: P = {P}", xlabel="index")
    print(f"layer {l}: min eigenvalue {vals.min():.1e}, "
          f"{int((vals > 1e-12 * vals[0]).sum())} nonzero of {P}")
axes[0].set_ylabel("eigenvalue of OP")
axes[0].legend()
fig.tight_layout()

# %% [markdown]
# **What to notice.** No eigenvalue is negative (beyond rounding) and at most $(N-1)\,n_L
# = 21$ are nonzero: the top layer ($P = 15$) is below the bound, the lower layers have
# a large null space that the population cannot see. The nonzero eigenvalues spread over
# several orders of magnitude, so a few directions dominate the flow.

# %% [markdown]
# ## 4. Training by the operator versus by the gradient
#
# `minissl.train(..., update="covariance")` replaces the gradient step by the operator: at
# every step it takes the batch's two views `[x, x_+]` as the population (`(N, 2, n_0)`) and
# moves each layer by `lr * covariance_update(net, views, l, xi)`. For soft triplet and
# InfoNCE, `xi` holds one **pair weight** per pair of samples, how hard the loss pushes that
# pair apart (notebook 1's $\xi = -\partial L/\partial r_-$; section 5 shows how it is
# computed and what it leaves out). It still computes the gradient, for the record:
# `cos_by_layer` is, per layer, the cosine between the gradient step $-\partial L/\partial
# W_l$ and the operator step. Here the same network is trained both ways with InfoNCE.

# %%
src = minissl.GaussianClusters(n_clusters=4, dim=8, noise=0.3, negatives=4, seed=0)
setting = dict(loss="infonce", tau=0.5, lr=0.05, steps=200, batch_size=64, seed=1)
runs = {}
for update in ("gradient", "covariance"):
    net8 = minissl.ReLUNet([8, 16, 16, 4], seed=0)
    runs[update] = (net8, minissl.train(net8, src, update=update, **setting))

cos = np.array(runs["covariance"][1]["cos_by_layer"])                  # (steps, layers)
fig, (a1, a2) = plt.subplots(1, 2)
for l in range(cos.shape[1]):
    a1.plot(cos[:, l], lw=0.8, label=f"layer {l}")
a1.axhline(0, color="k", lw=0.6)
a1.set(xlabel="step", ylabel="cosine", title="cos(gradient step, operator step)",
       ylim=(-1.05, 1.05))
a1.legend()
for update, ls in (("gradient", "-"), ("covariance", "--")):
    h = runs[update][1]
    a2.semilogy(h["r_pos"], "C0" + ls, lw=0.8, label=f"$r_+$, {update}")
    a2.semilogy(h["r_neg"], "C1" + ls, lw=0.8, label=f"$r_-$, {update}")
a2.set(xlabel="step", ylabel="$r$ (batch mean)", title="distances")
a2.legend(fontsize=7)
fig.tight_layout()
for s in (0, 50, 100, 199):
    print(f"step {s:3d}: cos by layer {np.round(cos[s], 3)}")

# %% [markdown]
# **What to notice.** For the first ~60 steps the operator step and the gradient step
# agree (cosines above 0.9 at every layer): this is the theorem at work, seen through one
# batch. Both runs push the negatives apart, the operator run faster (its pair weights treat
# all 64 samples of the batch as negatives, the loss has 4 per anchor). Once the distances
# reach the order of τ the agreement breaks: the
# cosine falls through zero and the operator keeps expanding everything, **including the
# positive pairs** ($r_+$ grows with $r_-$ in the dashed run), while gradient training keeps
# $r_+$ small. The simple loss's operator is exact; soft triplet's and InfoNCE's are built from
# an approximation of their pair weights. The next section shows what that approximation
# leaves out.

# %% [markdown]
# ## 5. Pair weights, and where the approximation departs
#
# For soft triplet and InfoNCE the gradient weights each pair by $\xi = -\partial L/\partial
# r_-$ (notebook 1), and Theorem 2 of the paper has the weighted operator
#
# $$\mathrm{OP}^\xi_l = \frac1{N^2} \sum_{n, n'} \xi_{nn'} (\bar K_n - \bar K_{n'})
# (\bar K_n - \bar K_{n'})^\top \qquad (\xi \equiv 1 \text{ gives } 2\,\mathbb V[\bar K]).$$
#
# The weights of the real gradient depend on the views of each combination, so to get
# one weight per *pair of samples* `minissl.covariance_pair_weights` uses the paper's
# large-batch approximation: distances between the view-averaged outputs $\bar f_n$, the
# positive distance taken as $r_+ \approx 0$, and
#
# * soft triplet: $\xi_{nn'} = \sigma\big((r_0 - \tfrac12\|\bar f_n - \bar f_{n'}\|^2)/\tau\big)$;
# * InfoNCE: $p_{nn'} = e^{-r_{nn'}/\tau} / (1 + \sum_{n''} e^{-r_{nn''}/\tau})$,
#   $\xi = N (p + p^\top)/2$.
#
# **Without augmentation** (identical views) nothing is left out and the identity is exact.
# With augmentation, four things are: the dependence of the weights on the views (they do
# not factor out of $\bar K$), the positive distance $r_+$, the within-sample spread of the
# outputs, and for InfoNCE an asymmetric residue (`docs/theory.md`, §5–6). The check below
# measures the gap on a population of N = 8 samples with M = 3 views, as the augmentation
# noise grows: the exact population gradient (soft triplet over all $(i,a,b,j,c)$; InfoNCE
# with every sample's view $c$ as the N negatives of each anchor-positive pair) against
# $-\mathrm{OP}^\xi\, \mathrm{vec}(W)$.

# %%
def infonce_population_gradient(net, views, tau):
    """InfoNCE over the population: anchor x_ia, positive x_ib, negatives x_jc for all j."""
    N, M, d = views.shape
    I, A, Bv, Cv = (k.ravel() for k in np.indices((N, M, M, M)))
    xa, xpos, xneg = views[I, A], views[I, Bv], views[:, Cv].transpose(1, 0, 2)  # (T, N, d)
    T = len(xa)
    Z = net.forward(np.concatenate([xa, xpos, xneg.reshape(T * N, d)]))
    _, (dz, dzp, dzn) = minissl.contrastive_loss(Z[:T], Z[T:2 * T], Z[2 * T:].reshape(T, N, -1),
                                                 "infonce", tau)
    return net.backward(np.concatenate([dz, dzp, dzn.reshape(T * N, -1)]))


def operator_gap(net, views, loss, tau):
    """Relative error and per-layer cosines of -OP^xi vec(W) against the exact gradient."""
    if loss == "infonce":
        exact = infonce_population_gradient(net, views, tau)
    else:
        exact = mean_gradient(net, population(views), loss, tau)
    xi = None if loss == "simple" else minissl.covariance_pair_weights(net, views, loss, tau=tau)
    op = [-minissl.covariance_update(net, views, l, xi=xi) for l in range(net.depth)]
    return rel(exact, op), [cosine(e, o) for e, o in zip(exact, op)]

# %% [markdown]
# The gap at τ = 0.5 as the augmentation noise grows (left), and at noise 0.2 as τ varies
# (right):

# %%
g = np.random.default_rng(4)
centres, noise_dirs = g.standard_normal((8, 1, 6)), g.standard_normal((8, 3, 6))
noises = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
gaps = {loss: [operator_gap(net, centres + s * noise_dirs, loss, tau=0.5)[0] for s in noises]
        for loss in ("simple", "soft_triplet", "infonce")}
taus = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
gaps_tau = {loss: [operator_gap(net, centres + 0.2 * noise_dirs, loss, tau=t)[0] for t in taus]
            for loss in ("soft_triplet", "infonce")}

fig, (a1, a2) = plt.subplots(1, 2)
for loss, errs in gaps.items():
    a1.loglog(noises[1:], np.maximum(errs[1:], 1e-16), "o-", ms=3, label=loss)
a1.loglog(noises[1:], 0.06 * np.array(noises[1:]) ** 2, "k:", lw=0.8, label="slope 2")
a1.set(xlabel="augmentation noise", title="gap at τ = 0.5")
a1.legend(fontsize=7)
for loss, errs in gaps_tau.items():
    a2.loglog(taus, errs, "o-", ms=3, color="C1" if loss == "soft_triplet" else "C2", label=loss)
a2.loglog(taus, 0.003 / np.array(taus), "k:", lw=0.8, label="slope −1")
a2.set(xlabel="τ", title="gap at noise 0.2")
a2.legend(fontsize=7)
for ax in (a1, a2):
    ax.set_ylabel("relative error of $-$OP$^\\xi$ vec W")
fig.tight_layout()
for loss, errs in gaps.items():
    print(f"{loss:13s}", "  ".join(f"{s:g}: {r:.0e}" for s, r in zip(noises, errs)))

# %% [markdown]
# **What to notice.** The simple loss is exact at every noise level (~1e-15, at the bottom
# of the left panel). Soft triplet and InfoNCE are exact without augmentation (noise 0 is
# printed above), and their error grows like the square of the noise; for these small,
# untrained embeddings it is still below 10% at noise 0.8. The right panel shows the other
# half of the story: at fixed noise the gap grows as τ shrinks (like 1/τ here). Since scaling the
# embedding is the same as lowering τ (notebook 1, exercise 3), what counts is the
# augmentation *relative to the embedding's scale and to τ*. Training grows the embedding,
# which is why the agreement of section 4 broke down during training although the
# augmentation never changed. On the networks trained in section 4, with a population drawn
# from the same source:

# %%
net_cov = runs["covariance"][0]
pop = src.views(16, 2, rng=7)
for name, trained in (("trained by the gradient", runs["gradient"][0]),
                      ("trained by the operator", net_cov)):
    err, cosines = operator_gap(trained, pop, "infonce", tau=0.5)
    print(f"{name}: relative error {err:.2f}, cosines by layer {np.round(cosines, 3)}")

# %% [markdown]
# On the gradient-trained network the operator is only a rough guide (cosine 0.56 at the
# first layer); on the operator-trained one the exact population gradient and the operator
# step point in opposite directions: the disagreement of section 4 is a property of the approximation,
# not of batch noise. The exact gradient's weight on the positive pair,
# $\partial L/\partial r_+ = \sum_k p_k$, grows when positives drift apart and pulls them back;
# the approximate operator set $r_+ = 0$ and has no such term.
#
# ## Exercises
#
# **Exercise 1 (rank).** In section 3 use a population of N = 3 samples
# (`src.views(3, 4, rng=3)`; here `src` must be the 6-dimensional source of section 3). How
# many nonzero eigenvalues will each layer's operator have?

# %% [answer]
# At most $(N-1)\,n_L = 2 \cdot 3 = 6$ per layer, since $\mathrm{OP} = \frac2N \sum_n
# (\bar K_n - \mu)(\bar K_n - \mu)^\top$ is a sum of $N$ terms of rank $\le n_L$ whose
# centred factors sum to zero. For this network all three layers have exactly 6 (fewer
# would mean, for example, a hidden unit that is off for every view, whose rows of $K$
# vanish).
#
# ```python
# src6 = minissl.GaussianClusters(n_clusters=4, dim=6, noise=0.3, seed=0)
# pop3 = src6.views(3, 4, rng=3)
# for l in range(3):
#     vals, _ = minissl.covariance_spectrum(net, pop3, l, k=net.weights[l].size)
#     print(l, int((vals > 1e-12 * vals[0]).sum()))        # 6 6 6
# ```

# %% [markdown]
# **Exercise 2 (a large temperature).** In section 5 compute the soft-triplet gap at noise
# 0.8 with `tau=50` instead of 0.5. Will the error be larger or smaller, and why?

# %% [answer]
# Much smaller: about 6e-4 instead of about 6e-2, a hundred times smaller for a τ a hundred
# times larger. With a large τ every soft-triplet weight
# $\sigma((r_0 - r)/\tau)$ is close to $\sigma(0) = 1/2$ whatever the distances, and the
# loss is close to $\tfrac12 (r_+ - r_-) + \tau \log 2$: half the simple loss, for which the
# operator is exact. The approximation only matters when the weights vary across pairs and
# views, i.e. when distances are comparable to τ.
#
# ```python
# print(operator_gap(net, centres + 0.8 * noise_dirs, "soft_triplet", tau=0.5)[0],
#       operator_gap(net, centres + 0.8 * noise_dirs, "soft_triplet", tau=50)[0])
# ```

# %% [markdown]
# **Exercise 3 (training by the operator, gently).** Rerun section 4 with `lr=0.01`
# instead of 0.05. Does the cosine stay positive for the 200 steps?

# %% [answer]
# Yes: with a five times smaller step the embeddings grow slowly, the distances stay well
# below τ = 0.5 for the whole run (mean $r_-$ about 0.05 at the end), and the operator step
# agrees with the gradient step throughout (the smallest cosines over the run are 0.87, 0.95
# and 0.97 for the three layers). The
# breakdown of section 4 is not about the number of steps but about how large the embedding
# has become relative to τ: run long enough and it comes.
