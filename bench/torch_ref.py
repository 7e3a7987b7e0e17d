"""Plain PyTorch implementations of the benchmarked computations (the reference of bench/run.py).

Written the way a PyTorch user would: ``nn.Linear`` layers (bias-free) whose weights are
multiplied by a 0/1 mask buffer in ``forward``, autograd for the backward, ``torch.optim.SGD``
for the update. The maths is minissl's (docs/design.md), so a step here and a minissl step from
the same weights and batch give the same loss and the same new weights (tests/test_kernels.py
checks it):

    g_l = f_{l-1} W_l^T (W_l * mask_l),  f_l = relu(g_l) (l < L),  f_L = g_L
    r_pos = ½||z - z_pos||²,  r_k = ½||z - z_neg_k||²;  loss = mean over anchors

Needs ``torch`` (the ``bench`` extra, ``torch==2.13.0``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MaskedMLP(nn.Module):
    """Bias-free ReLU MLP; layer l has weight (n_l, n_{l-1}) and an optional 0/1 mask."""

    def __init__(self, sizes, masks=None, dtype="float64", weights=None):
        super().__init__()
        dt = DTYPES[dtype]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False, dtype=dt)
                                    for a, b in zip(sizes[:-1], sizes[1:]))
        L = len(self.layers)
        for l in range(L):
            m = None if masks is None or masks[l] is None else torch.as_tensor(
                np.asarray(masks[l]), dtype=dt)
            self.register_buffer(f"mask{l}", m)
        if weights is not None:
            with torch.no_grad():
                for lin, W in zip(self.layers, weights):
                    lin.weight.copy_(torch.as_tensor(np.asarray(W), dtype=dt))

    def forward(self, x):
        L = len(self.layers)
        for l, lin in enumerate(self.layers):
            m = getattr(self, f"mask{l}")
            W = lin.weight if m is None else lin.weight * m
            x = F.linear(x, W)
            if l < L - 1:
                x = torch.relu(x)
        return x


def contrastive_loss(z, z_pos, z_neg, loss="infonce", tau=1.0, margin=0.0):
    """Mean over anchors; ``z``, ``z_pos`` (N, d), ``z_neg`` (N, H, d)."""
    r_pos = 0.5 * ((z - z_pos) ** 2).sum(-1)                      # (N,)
    r_neg = 0.5 * ((z[:, None, :] - z_neg) ** 2).sum(-1)          # (N, H)
    if loss == "simple":
        L = r_pos - r_neg[:, 0]
    elif loss == "soft_triplet":
        L = tau * F.softplus((r_pos - r_neg[:, 0] + margin) / tau)
    elif loss == "infonce":
        a = -torch.cat([r_pos[:, None], r_neg], dim=1) / tau
        L = r_pos + tau * torch.logsumexp(a, dim=1)
    else:
        raise ValueError(f"loss must be simple, soft_triplet or infonce, got {loss!r}")
    return L.mean()


def simclr_loss(z1, z2, tau=1.0):
    """InfoNCE with in-batch negatives on ``Z = [z1; z2]`` (2N, d): view i's positive is its
    partner, its negatives the other 2N - 2 views; mean over the 2N anchors."""
    Z = torch.cat([z1, z2])
    B = Z.shape[0]
    N = B // 2
    sq = (Z * Z).sum(1)
    R = (0.5 * (sq[:, None] + sq[None, :]) - Z @ Z.T).clamp_min(0)   # r_ij (B, B)
    idx = torch.arange(B, device=Z.device)
    partner = (idx + N) % B
    r_pos = R[idx, partner]
    logits = -R / tau
    logits = logits.masked_fill(torch.eye(B, dtype=torch.bool, device=Z.device), float("-inf"))
    return (r_pos + tau * torch.logsumexp(logits, dim=1)).mean()


def make_step(model, lr, loss="infonce", tau=1.0, margin=0.0, negatives="given"):
    """A closure ``step(batch) -> loss`` doing forward, loss, autograd backward, SGD."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        if negatives == "in_batch":
            x, x_pos = batch[0], batch[1]
            N = x.shape[0]
            Z = model(torch.cat([x, x_pos]))
            value = simclr_loss(Z[:N], Z[N:], tau)
        else:
            x, x_pos, x_neg = batch
            N, H, n0 = x_neg.shape
            Z = model(torch.cat([x, x_pos, x_neg.reshape(N * H, n0)]))
            value = contrastive_loss(Z[:N], Z[N:2 * N], Z[2 * N:].reshape(N, H, -1), loss,
                                     tau, margin)
        value.backward()
        opt.step()
        return value.detach()

    return step


# ----------------------------------------------------------------------------- HLTM
class TorchHLTM:
    """HLTM sampler in torch (same law as ``minissl.hltm.HLTM``, other random numbers):
    level by level, ``child = parent XOR (u < (1 - rho)/2)``. Built from a minissl tree's
    polarities so both sample the same model."""

    def __init__(self, tree, dtype="float64", seed=0):
        self.c, self.depth = tree.num_children, tree.depth
        self.flip = [None] + [torch.as_tensor((1.0 - tree.level_rho(k)) / 2)
                              for k in range(1, tree.depth + 1)]
        self.keep_depth = tree.keep_depth
        self.dtype = DTYPES[dtype]
        self.gen = torch.Generator().manual_seed(seed)

    def _grow(self, levels):
        n = levels[0].shape[0]
        for k in range(len(levels), self.depth + 1):
            parent = levels[-1].repeat_interleave(self.c, dim=1)
            flip = torch.rand((n, self.c ** k), generator=self.gen, dtype=torch.float64) \
                < self.flip[k]
            levels.append(parent ^ flip)
        return levels

    def _levels(self, n):
        return self._grow([torch.randint(0, 2, (n, 1), generator=self.gen).bool()])

    def sample(self, n):
        """``(x, z)``: leaves (n, c**L) and latents (n, n_latents) BFS, root first."""
        lv = self._levels(n)
        return lv[-1].to(self.dtype), torch.cat(lv[:-1], dim=1).to(self.dtype)

    def triples(self, n):
        """Anchor and positive share the latents of depth >= keep_depth; one negative."""
        top = self._levels(n)[:self.depth - self.keep_depth + 1]
        a = self._grow(list(top))[-1]
        p = self._grow(list(top))[-1]
        neg = self._levels(n)[-1]
        return a.to(self.dtype), p.to(self.dtype), neg.to(self.dtype)[:, None, :]


def normalized_correlation(model, x, z, level_starts, level_sizes, hid):
    """Per latent ``max_u |Pearson(z_mu, g_u)|`` over its group's pre-activations (float64),
    from one forward with every layer's pre-activation kept."""
    gs = []
    f = x
    with torch.no_grad():
        L = len(model.layers)
        for l, lin in enumerate(model.layers):
            m = getattr(model, f"mask{l}")
            g = F.linear(f, lin.weight if m is None else lin.weight * m)
            gs.append(g.double())
            f = torch.relu(g)
        out = []
        zc = z.double() - z.double().mean(0)
        for k in range(L):
            g = gs[L - k - 1].reshape(len(x), level_sizes[k], hid)
            gc = g - g.mean(0)
            zk = zc[:, level_starts[k]:level_starts[k + 1]]
            cov = torch.einsum("ng,ngh->gh", zk, gc)
            den = torch.sqrt((zk * zk).sum(0)[:, None] * (gc * gc).sum(0))
            out.append(torch.where(den > 0, cov.abs() / den.clamp_min(1e-300),
                                   torch.zeros_like(cov)).amax(1))
    return torch.cat(out)


# ----------------------------------------------------------------------------- covariance spectrum
def covariance_spectrum(weights, views, layer, k=4, tol=0.0, seed=0, counter=None):
    """Top-k eigenpairs of ``OP_l = 2 V[Kbar_l]`` (bias-free, unmasked net), matrix-free in
    torch, Lanczos from SciPy (``eigsh``; torch has no top-k Lanczos for an operator). The
    products go up and down the layers with matmuls and ReLU gates (no Jacobian tensor):

        u_n = mean_m J_l(x_nm) V f_{l-1}(x_nm),  c = (2/N)(u - mean u),
        OP vec(V) = vec( (1/M) sum_nm (J_l(x_nm)^T c_n) f_{l-1}(x_nm)^T )

    ``weights``: NumPy arrays, ``views`` (N, M, n_0) float64. Returns ``(values, vectors)``.
    ``counter``: a dict whose "count" gets the number of products.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh
    Ws = [torch.as_tensor(np.asarray(W), dtype=torch.float64) for W in weights]
    L = len(Ws)
    N, M, n0 = views.shape
    f = torch.as_tensor(np.asarray(views), dtype=torch.float64).reshape(N * M, n0)
    gates, fs = [], [f]
    with torch.no_grad():
        for l, W in enumerate(Ws):
            g = f @ W.T
            if l < L - 1:
                gates.append((g > 0).to(torch.float64))
                f = torch.relu(g)
                fs.append(f)
    F = fs[layer]                                              # (NM, n_{l-1})
    shape = tuple(Ws[layer].shape)
    P = shape[0] * shape[1]
    if counter is not None:
        counter["count"] = 0

    def mv(v):
        if counter is not None:
            counter["count"] += 1
        with torch.no_grad():
            V = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).reshape(shape)
            h = F @ V.T                                        # (NM, n_l)
            for a in range(layer, L - 1):
                h = (h * gates[a]) @ Ws[a + 1].T
            u = h.reshape(N, M, -1).mean(1)                    # (N, n_L)
            c = (2.0 / N) * (u - u.mean(0))
            d = c.repeat_interleave(M, dim=0)                  # (NM, n_L)
            for a in range(L - 1, layer, -1):
                d = (d @ Ws[a]) * gates[a - 1]
            return ((d.T @ F) / M).reshape(-1).numpy()

    A = LinearOperator((P, P), matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(P)
    w, U = eigsh(A, k=k, which="LA", v0=v0, tol=tol)
    order = np.argsort(w)[::-1]
    return w[order], U[:, order]
