"""Notebook 6 of the minissl course: the theory meets real data (source of
06_real_data.ipynb). Build it with ``python docs/course/refresh.py 06``.
"""
# %% [markdown]
# # 6 · Real data: digits, from scratch
#
# *minissl course, notebook 6 of 6 —
# [previous: feature decoupling](05_feature_decoupling.ipynb) ·
# [course index](README.md)*
#
# The first five notebooks used data models whose every statistic is known: latent trees,
# Gaussian views, sparse coding. This one trains on **real data**: scikit-learn's 1,797
# 8x8 handwritten digits (they ship with scikit-learn, nothing downloads). We
#
# 1. make two augmented views of a batch of digits by hand (translation, masks, noise);
# 2. write one SimCLR step by hand in NumPy: forward through a bias-free ReLU net, InfoNCE
#    with in-batch negatives, backward, and check every number against `minissl`;
# 3. then use `minissl` to train SimCLR, BYOL and a supervised reference, and compare linear
#    probes of what they learned against the raw pixels and a random network;
# 4. look at the first-layer weights as 8x8 pictures, with and without complementary masks.
#
# Everything runs in well under a minute. `docs/realdata.md` has the full tables (MNIST-1D
# too) and the commands that made them.

# %%
import numpy as np
import matplotlib.pyplot as plt

from minissl import ReLUNet, TrainConfig, datasets
from minissl.experiments import RealDataConfig, realdata_run
from minissl.experiments.realdata import initial_weights
from minissl.figures import plots
from minissl.train import loss_and_grads

plt.rcParams.update({"figure.dpi": 90, "figure.figsize": (6.4, 3.0), "font.size": 9})
np.set_printoptions(precision=4, suppress=True)

digits = datasets.digits()                      # a fixed 80 / 20 split (split_seed 0)
print(digits.x_train.shape, digits.x_test.shape, "pixel values", digits.x_train.min(),
      "to", digits.x_train.max())

# %% [markdown]
# ## 1. Two views of a batch, by hand
#
# An augmentation maps a sample to a random **view** of it; a positive pair is two views of
# the same sample. For 8x8 digits the usual ones are a translation by up to one pixel
# (padding with the background, 0), a random mask (each pixel kept with probability $p$)
# and a little Gaussian noise. Here is the translation written with slices, for a batch of
# $N$ images with one shift $(s_y, s_x) \in \{-1, 0, 1\}^2$ per image:
# $\text{out}[i, j] = x[i - s_y, j - s_x]$, zero outside.

# %%
def shift_by_hand(x, dy, dx):
    """x (N, 64) -> every image moved by (dy[n], dx[n]), zero padding."""
    out = np.zeros((len(x), 8, 8))
    img = x.reshape(-1, 8, 8)
    for n in range(len(x)):
        a, b = dy[n], dx[n]
        out[n, max(a, 0):8 + min(a, 0), max(b, 0):8 + min(b, 0)] = \
            img[n, max(-a, 0):8 + min(-a, 0), max(-b, 0):8 + min(-b, 0)]
    return out.reshape(len(x), 64)


N = 8
x = digits.x_train[:N]
rng = np.random.default_rng(0)
dy, dx = rng.integers(-1, 2, N), rng.integers(-1, 2, N)      # rows, then columns
mine = shift_by_hand(x, dy, dx)
lib = datasets.translate(x, (8, 8), 1, np.random.default_rng(0))  # the same draws
print("largest difference from minissl.datasets.translate:", np.abs(mine - lib).max())

# %% [markdown]
# The library's augmentations are functions on batches with a NumPy generator passed in
# (`datasets.translate`, `random_mask`, `gaussian_noise`, `amplitude_scale`,
# `complementary_masks`). `datasets.RealData` chains them and **standardises** with the
# training split's statistics: $v \mapsto (v - \mu) / \sigma$, with $\mu$ the per-pixel
# mean and $\sigma$ one number (the RMS of the centred data), so that the corner pixels,
# always 0 in the training split, do not blow up when a translation moves ink there.

# %%
source = datasets.RealData(digits, shift=1, noise=0.1, mask="random", keep=0.8)
views = source.views(N, 2, rng=1)                              # (N, 2, 64)
fig, axes = plt.subplots(3, N, figsize=(7.5, 3.0))
for n in range(N):
    for r, img in enumerate((source.standardise(x[n:n + 1])[0], views[n, 0], views[n, 1])):
        axes[r, n].imshow(img.reshape(8, 8), cmap="gray_r")
        axes[r, n].set_xticks([]), axes[r, n].set_yticks([])
for r, name in enumerate(("sample", "view 1", "view 2")):
    axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center")
plt.show()

# %% [markdown]
# ## 2. One SimCLR step by hand
#
# The encoder is the theory's bias-free ReLU network, $f_0 = x$, $g_l = f_{l-1} W_l^\top$,
# $f_l = \mathrm{relu}(g_l)$, output $z = g_L$. SimCLR puts both views of $N$ samples in
# one batch $Z = [z^{(1)}; z^{(2)}]$ ($2N$ rows); with half squared distances
# $r_{ij} = \tfrac12\|z_i - z_j\|^2$, anchor $i$'s positive its partner $p(i) = i \pm N$ and
# every other row a negative, the loss with the temperature prefactor (docs/design.md) is
#
# $$L = \frac{1}{2N} \sum_i \Big[ r_{i,p(i)} + \tau \log \sum_{j \ne i} e^{-r_{ij}/\tau} \Big],
# \qquad \frac{\partial L}{\partial r_{ij}} = \frac{1}{2N}\big([j = p(i)] - w_{ij}\big),
# \quad w_{ij} = \frac{e^{-r_{ij}/\tau}}{\sum_{k \ne i} e^{-r_{ik}/\tau}}.$$
#
# Since $\partial r_{ij} / \partial z_i = z_i - z_j$, the gradient on row $i$ is
# $\sum_j (C_{ij} + C_{ji}) (z_i - z_j)$ with $C = \partial L / \partial r$; the backward
# pass then runs through the layers: $\partial L/\partial W_l = \delta_l^\top f_{l-1}$,
# $\delta_{l-1} = (\delta_l W_l) \odot [g_{l-1} > 0]$.

# %%
def simclr_by_hand(Ws, x1, x2, tau):
    """Loss and dL/dW_l of InfoNCE in the SimCLR arrangement, NumPy only."""
    fs, gs = [np.concatenate([x1, x2])], []
    for l, W in enumerate(Ws):                                  # forward
        gs.append(fs[-1] @ W.T)
        if l < len(Ws) - 1:
            fs.append(np.maximum(gs[-1], 0))
    Z = gs[-1]                                                  # (2N, d)
    B, half = len(Z), len(Z) // 2
    R = 0.5 * ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)    # (2N, 2N) r_ij
    partner = (np.arange(B) + half) % B
    a = np.where(np.eye(B, dtype=bool), -np.inf, -R / tau)
    m = a.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(a - m).sum(1))
    loss = np.mean(R[np.arange(B), partner] + tau * lse)
    w = np.exp(a - lse[:, None])                                # softmax over j != i
    C = -w
    C[np.arange(B), partner] += 1.0
    C /= B
    S = C + C.T
    delta = S.sum(1, keepdims=True) * Z - S @ Z                 # dL/dZ: sum_j S_ij (z_i - z_j)
    grads = [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):                        # backward
        grads[l] = delta.T @ fs[l]
        if l > 0:
            delta = (delta @ Ws[l]) * (gs[l - 1] > 0)
    return loss, grads


net = ReLUNet([64, 32, 32, 16], seed=0)                         # bias-free, float64
x1, x2 = views[:, 0], views[:, 1]
loss, grads = simclr_by_hand([W.copy() for W in net.weights], x1, x2, tau=0.1)
cfg = TrainConfig(loss="infonce", tau=0.1, negatives="in_batch")
lib_loss, _, _, lib_grads = loss_and_grads(net, (x1, x2, None), cfg)
print(f"loss by hand {loss:.10f}   minissl {lib_loss:.10f}")
for l, (g, h) in enumerate(zip(grads, lib_grads)):
    print(f"layer {l + 1}: largest |dW| difference {np.abs(g - h).max():.1e} "
          f"(|dW| up to {np.abs(h).max():.1e})")

# %% [markdown]
# The hand-written step and the library agree to rounding. One step of gradient descent is
# then $W_l \leftarrow W_l - \eta\, \partial L / \partial W_l$ (the library's default for
# these runs is Adam, `TrainConfig(optimizer="adam")`). Training is that step repeated on
# fresh views, which `minissl.train` does, with `negatives="in_batch"` selecting this
# arrangement.
#
# ## 3. What the methods learn
#
# `experiments.realdata_run` trains the default encoder (64 → 256 → 256 → 64) with a
# method and probes it on the **test split**: a logistic regression (scikit-learn) fit on
# the training split's representations, scored on the test split, for the output and for
# the last hidden layer. The references: the raw pixels, the same network at its random
# initialisation, and the same network trained with labels (cross-entropy through a linear
# head, `losses.softmax_cross_entropy`). 20 epochs each keep this notebook quick.

# %%
rows = {}
for method in ("raw", "random", "simclr", "supervised"):
    r = realdata_run(RealDataConfig(data="digits", method=method, epochs=20, seed=0),
                     data=digits)[-1]
    rows[method] = r
    print(f"{method:10s} linear probe: output {r['linear_probe']:.3f}  hidden "
          f"{r['linear_probe_hidden']:.3f}   effective rank {r['effective_rank']:5.1f}   "
          f"{r['seconds']:.1f} s")

# %% [markdown]
# What to notice: digits are easy, so the raw pixels already give a high probe and the
# differences are a point or two (about the spread over seeds, docs/realdata.md). A random
# ReLU network's hidden layer is as good as the pixels (a random expansion keeps the
# information); its 64-wide output loses some. SimCLR lifts the output above the random
# net's without a single label, here level with the supervised reference, whose hidden layer
# is the best. On MNIST-1D, where the raw signal gives only 0.33, the gaps are much larger
# (docs/realdata.md).
#
# ## 4. The first layer, as pictures
#
# Each first-layer unit has one weight per pixel, an 8x8 picture. Feature decoupling
# (notebook 5) says that complementary masks push the neurons towards features that
# survive in each half of the input, *when the features are spread over many coordinates*.
# The random initialisation hides what training did, so we draw the change
# $W - W(0)$ of the 12 units that changed most, after SimCLR with no augmentation at all and
# with complementary masks.

# %%
dW = {}
for mask in ("none", "complementary"):
    cfg = RealDataConfig(data="digits", method="simclr", epochs=40, mask=mask, shift=0,
                         scale=0.0, noise=0.0)
    r = realdata_run(cfg, data=digits)[-1]
    dW[mask] = r["weights"] - initial_weights(cfg, 64)
    print(f"{mask:13s} linear probe: output {r['linear_probe']:.3f}  hidden "
          f"{r['linear_probe_hidden']:.3f}")
fig = plots.first_layer_figure([dW["none"], dW["complementary"]], (8, 8),
                               ["no augmentation", "complementary"], n=12)
fig

# %% [markdown]
# With identical views the changes are smooth, large blobs: InfoNCE spreads the samples
# apart along the directions in which the digits vary most, broad low-frequency patterns.
# With complementary masks they are speckled, and the probes drop (about 0.86 against 0.96
# for the output). Each view sees half of the pixels, and a digit's strokes are a few
# neighbouring pixels, not directions spread over all 64 coordinates, so the masks destroy
# the features instead of decoupling them from the rest: this is the coordinate-aligned case
# of notebook 5's Exercise 1, where complementary masks did worse than no augmentation.
# Feature decoupling needs delocalised features. `python -m minissl realdata --data digits
# --claim decoupling` makes the full-size table and figure in docs/realdata.md.
#
# ## Exercises

# %% [markdown]
# **Exercise 1 (the collapse).** Train BYOL without a predictor
# (`method="byol-nopred"`) on digits for 30 epochs and compare the effective rank of its
# output with BYOL's (`method="byol"`, same epochs). What happened?

# %% [answer]
# The output's effective rank falls from 41.8 (BYOL with its mlp predictor, 30 epochs) to
# 8.7, and keeps falling with training (4.6 after 100 epochs, docs/realdata.md; 3.2 on
# MNIST-1D): without the predictor the online and target networks agree best by mapping
# every input into a few directions, the collapse of notebook 4, now on real data. The
# linear probe of the output drops with it (0.944 → 0.933), the hidden layer's barely moves
# (0.986 → 0.978): the collapse happens in the last linear layer.
#
# ```python
# r = realdata_run(RealDataConfig(data="digits", method="byol-nopred", epochs=30),
#                  data=digits)[-1]
# print(r["effective_rank"], r["linear_probe"], r["linear_probe_hidden"])   # 8.7 0.933 0.978
# ```

# %% [markdown]
# **Exercise 2 (a hand-written SupCon).** SupCon (`method="supcon"`) counts every row of
# the batch with the anchor's label as a positive. Which line of `simclr_by_hand` changes,
# and into what?

# %% [answer]
# Only the "+1 on the partner" line: with $P_i$ the other rows of label $y_i$ (the partner
# included), SupCon's loss per anchor is $\frac1{|P_i|}\sum_{p \in P_i} r_{ip} + \tau \log
# \sum_{j \ne i} e^{-r_{ij}/\tau}$, so $C_{ij} = [j \in P_i] / |P_i| - w_{ij}$. In code,
# with `y` the labels of the $2N$ rows:
#
# ```python
# P = (y[:, None] == y[None, :]) & ~np.eye(B, dtype=bool)
# C = P / P.sum(1, keepdims=True) - w
# ```
#
# and the rest (the chain to $Z$, the backward) is unchanged; `losses.supcon_weights`
# computes the same $C$.
