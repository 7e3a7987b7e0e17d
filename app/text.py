"""The long Markdown texts of the app (``demo.py``): the page header and each tab's explanation.

Kept apart so that ``demo.py`` stays wiring. Every number quoted here names the command that
printed it.
"""

DESCRIPTION = """
# minissl: self-supervised learning with dual deep networks, live

A small bias-free ReLU network is trained with a contrastive loss on data from a
**hierarchical latent tree model** (HLTM): binary latents in a tree, only the leaves are seen.
It is never told the latents, yet its hidden units come to correlate with them, from the
leaves upwards. The theory (Tian, Yu, Chen & Ganguli 2020, *Understanding Self-supervised
Learning with Dual Deep Networks*) explains why: each layer's weight update is a
**covariance operator** applied to the weights. The tabs let you train and watch
(*Latent recovery*), look at that operator (*Covariance operator*) and at the losses that
weight it (*Losses*), see why BYOL does not collapse, and which features an augmentation lets
a network learn (*Feature decoupling*).
"""

HLTM_TEXT = """
Binary latents in a tree; the network sees only the leaves and is trained to pull two views
sharing the root together and push independent samples apart. Each latent is coloured by the
best |correlation| between it and the pre-activations of *its* units. Per depth: solid the
network, dashed the untrained network, grey the region above the ceiling (the exact posterior
mean, the best any function of the subtree's leaves can do).
"""

LUCK_TEXT = r"""
### Luck matters: which unit wins, and what the representation is good for
Every latent has `hid` units, randomly initialised. The paper's claim: the covariance operator
*amplifies initial random selectivity*, so the unit that ends best correlated with its latent
is usually one that already was at initialisation. **Left**: every unit of the chosen latent
(BFS index, 0 = the root) over training, the final winner in red. **Right**: every unit of the
tree, its selectivity at initialisation against now, coloured by depth, each latent's winner
ringed; ρ is Spearman's rank correlation per depth (near 1: training kept the initial order).
**Below**: linear (logistic regression) and k-NN probes of the latent from the leaves, each
layer and the output, on a held-out test set, untrained (light) and trained (dark), against
the Bayes accuracy: thresholding $E[z \mid \text{leaves}]$ at ½, given the latent's own
subtree (dashed) or all leaves (solid). The probe follows the root; numbers and the multi-seed
statistics: `python -m minissl selectivity --seeds 3`, `python -m minissl hltm --probe all`
(docs/hltm.md).
"""

COV_TEXT = r"""
For a bias-free ReLU network, layer $l$'s output is linear in its weights:
$f_L(x) = K_l(x)^\top \mathrm{vec}(W_l)$. With $\bar K_l(x)$ its average over augmented views,
the paper shows that gradient descent on the contrastive loss moves each layer by the
**covariance operator**: $\mathrm{vec}(\Delta W_l) = \mathrm{OP}_l\,\mathrm{vec}(W_l)$,
$\mathrm{OP}_l = \mathbb{V}^\xi[\bar K_l(x)]$ (pair weights $\xi$ from the loss; $2\mathbb{V}$
for the simple loss, exact for a large batch). The weights grow along OP's top
eigenvectors. Top left: OP's top spectrum now (dots) and at initialisation (crosses). Top
right: the cosine between the actual gradient step and $\mathrm{OP}_l\,\mathrm{vec}(W_l)$ per
layer (1 = the theory holds exactly on this batch). Bottom: the top eigenvector reshaped as
$W_l$ (rows: units of layer $l$, columns: its inputs; the tree mask shows as blocks). The
**layer** field is the 0-based index into `net.weights` (0 = the bottom layer, from the leaves),
as everywhere in minissl: index $l-1$ is the paper's $W_l$; the cosine legend uses the same
indices.

**Why the cosine falls late in training (InfoNCE, soft triplet).** For those losses the pair
weights $\xi$ are the paper's *large-batch approximation*: distances from view-averaged outputs,
$r_+ \approx 0$, weights independent of the particular views. Early on the outputs are close
and the approximation is good; as training separates the samples, InfoNCE's weights
concentrate on a few near pairs, the real gradient shrinks, and what the approximation leaves
out becomes a large part of it. With the default settings the cosines per layer are 0.89-0.95
at step 200 and 0.15-0.46 at step 500; with the *simple* loss ($\xi \equiv 1$, nothing
approximated; lr 0.01) they stay between 0.71 and 0.94 at every snapshot of the 600 steps
(`python -m minissl covariance --steps 600 --snapshots 6`, then with `--loss simple --lr 0.01`;
docs/theory.md §6). The simple loss's gap from 1 is sampling: the gradient uses one negative per
anchor, the operator the whole batch as its population.
"""

ACCEL_TEXT = r"""
### A trained top layer speeds up the bottom layer
In a two-layer net the bottom layer's update is the covariance operator *through the top
layer*: linearly, $\dot W_1 = 2 W_2^\top W_2 W_1 \Sigma$, so a larger, growing $W_2$ moves
$W_1$ faster. The same depth-2 tree network (8 leaves under each depth-1 latent) is trained
three times from one initialisation and one data stream, the top layer **frozen** at its
initial value, **trained**, or **scaled** up at initialisation and trained. Left, middle: the
depth-1 units' mean selectivity and the bottom layer's relative weight change; right: the
exact linear flow. With the simple loss (ξ ≡ 1: the gradient *is* OP vec W) the trained and
scaled top layers accelerate the bottom layer until the unbounded loss blows up (×). Try
InfoNCE with lr 0.1: the picture is mixed, a trained top raises the units' mean selectivity
most but the best unit ends highest with a frozen top (`python -m minissl acceleration`, and
with `--loss infonce --lr 0.1`; docs/theory.md §9).
"""

LOSSES_TEXT = r"""
**Conventions.** Distances are *half* squared distances of embeddings:
$r_+ = \tfrac12\|f(x)-f(x_+)\|^2$ to the positive, $r_k = \tfrac12\|f(x)-f(x_k^-)\|^2$ to
negative $k$. Per anchor:
simple $L = r_+ - r_1$;
soft triplet $L = \tau\log(1+e^{(r_+ - r_1 + r_0)/\tau})$;
InfoNCE $L = -\tau\log\frac{e^{-r_+/\tau}}{e^{-r_+/\tau}+\sum_k e^{-r_k/\tau}}$.
**Signs.** Every loss increases with $r_+$ and decreases with each $r_k$:
the **pair weight** $\xi_k = -\partial L/\partial r_k \ge 0$ and
$\partial L/\partial r_+ = \sum_k \xi_k$ (dotted). The same $\xi$ weights the pairs in the
covariance operator $\mathrm{OP}^\xi_l$, so a loss matters to the dynamics only through $\xi$:
the simple loss weights every pair equally ($\xi \equiv 1$); soft triplet and InfoNCE give
little weight to negatives that are already far away, and τ sets how far is far.
With one negative and $r_0 = 0$, InfoNCE *is* the soft triplet loss (dashed over solid).
"""

BYOL_TEXT = """
BYOL has no negative pairs. Train it with and without a predictor, with BatchNorm's mean part
normal / detached / omitted, with and without an EMA target, and watch the embeddings collapse
(effective rank → 1, std → 0) or not. See docs/byol.md.
"""

DECOUPLING_TEXT = r"""
Data $x = Mz + \xi$: sparse features $z \in \{-1, 0, 1\}^d$ along delocalised directions
$M$ (to learn) plus dense features $\xi$ spread over $r$ other directions (to avoid). A
one-layer network (unit-norm weights, symmetric thresholded ReLU with a learned threshold,
or ReLU) is trained with InfoNCE. **Feature decoupling** (Wen & Li 2021): the neurons learn
the sparse features when the augmentation keeps the two views' sparse parts correlated
($\rho_{sparse}$) but decorrelates their dense parts ($\rho_{dense}$); both are closed forms,
shown in the status line. Without augmentation the neurons sit in the high-rank dense
directions; complementary masks turn them onto the sparse features; with a low dense rank
(try 6, or 6 with dense energy 3) the masks keep the dense part correlated and no longer help.
Top: each neuron's best alignment with a sparse feature against its share in the dense
subspace, and how well each sparse feature is covered; below: the means over training
(docs/decoupling.md has the tables and the commands).
Settings: d = 16 features, d1 = 64 inputs, k = 2 active, batch 128, Adam 3e-3, τ 0.2.
"""

REALDATA_TEXT = r"""
The same methods on **real data**, from scratch: scikit-learn's 8x8 **digits** (1,797 images)
and **MNIST-1D** (40-sample 1-D digit signals, made locally). The encoder is
input → width → width → 64, ReLU, bias-free; the views come from the usual augmentations
(translations, amplitude scaling, noise, random or complementary masks). Watch the training
loss, the accuracy of a linear probe of the output on the test split (measured a few times
on 1,000 samples), and the first-layer weights as pictures: with complementary masks on
digits they turn into localised strokes. At the end: linear and k-NN probes of the output
and the last hidden layer, and the effective rank of the output (BYOL without a predictor
collapses to a few dimensions). docs/realdata.md has the tables and the commands.
"""
