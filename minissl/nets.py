"""Deep bias-free ReLU networks with hand-written forward and backward passes.

Network (DESIGN.md §1), batch-major:

    f_0 = x                                   # (N, n_0)
    g_l = f_{l-1} @ W_l.T (+ b_l)             # (N, n_l),  W_l: (n_l, n_{l-1})
    f_l = relu(g_l)  for l < L,   f_L = g_L   # top layer linear
    out = f_L / (||f_L|| + eps)  if normalize  # optional output L2 normalisation

Backward of ``sum(dout * out)``:

    delta_L = d out / d g_L applied to dout   # (N, n_L)
    dW_l    = delta_l.T @ f_{l-1}   (* mask_l)  # (n_l, n_{l-1})
    db_l    = delta_l.sum(0)
    delta_{l-1} = (delta_l @ W_l) * (g_{l-1} > 0)

Top-down Jacobian ``J_l(x) = d f_L / d g_l`` (with layer l's own ReLU gate):
``J_L = I``, ``J_l = J_{l+1} W_{l+1} D_l``, ``D_l = diag(g_l > 0)``.

The pure functions ``forward_pass``/``backward_pass`` take arrays and return arrays (easy to
test, easy to replace with a compiled kernel); ``ReLUNet`` is the thin stateful wrapper.
"""
from __future__ import annotations

import numpy as np

from . import backend as B

MAX_LAYERS = 64          # depth limit (number of weight matrices)
MAX_WIDTH = 1 << 20      # width limit per layer


# ----------------------------------------------------------------------------- pure maths
def forward_pass(weights, biases, x, xp=np):
    """Return ``(gs, fs)``: pre-activations ``g_1..g_L`` and inputs ``f_0..f_{L-1}`` per layer.

    ``weights[l]``: (n_{l+1}, n_l); ``biases[l]``: (n_{l+1},) or None; ``x``: (N, n_0).
    ``gs[-1]`` is the network output before any normalisation.
    """
    fs, gs = [x], []
    f = x
    L = len(weights)
    for l, W in enumerate(weights):
        g = f @ W.T                               # (N, n_l)
        if biases is not None and biases[l] is not None:
            g = g + biases[l]
        gs.append(g)
        if l < L - 1:
            f = xp.maximum(g, 0)
            fs.append(f)
    return gs, fs


def backward_pass(weights, gs, fs, delta, masks=None, want_bias=False, want_input=False):
    """Gradients of ``sum(delta * g_L)`` given the forward caches.

    Returns ``(dWs, dbs, dx)``: ``dWs[l]`` like ``weights[l]`` (masked where a mask is given),
    ``dbs[l]`` of shape (n_{l+1},) when ``want_bias`` else None, ``dx`` (N, n_0) when
    ``want_input`` else None.
    """
    L = len(weights)
    dWs, dbs = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        dW = delta.T @ fs[l]                      # (n_l, n_{l-1})
        if masks is not None and masks[l] is not None:
            dW *= masks[l]
        dWs[l] = dW
        if want_bias:
            dbs[l] = delta.sum(axis=0)
        if l > 0 or want_input:
            delta = delta @ weights[l]            # (N, n_{l-1})
            if l > 0:
                delta *= gs[l - 1] > 0
    return dWs, (dbs if want_bias else None), (delta if want_input else None)


def _inverse(s, xp):
    """``1/s`` where ``s > 0``, else 0 (a zero output row stays zero and passes no gradient)."""
    pos = s > 0
    return xp.where(pos, 1.0 / xp.where(pos, s, 1.0), 0.0)


def normalize_forward(z, eps=0.0, xp=np):
    """``y = z / (||z|| + eps)`` row-wise; returns ``(y, norm)`` with ``norm`` (N, 1)."""
    norm = xp.sqrt((z * z).sum(axis=1, keepdims=True))
    return z * _inverse(norm + eps, xp), norm


def normalize_backward(z, norm, dy, eps=0.0, xp=np):
    """Chain ``dy`` through ``y = z / (||z|| + eps)``, ``s = ||z|| + eps``:

    ``dz = dy / s - z (z . dy) / (s^2 ||z||) = (dy - y (y . dy) s / ||z||) / s``.
    """
    inv = _inverse(norm + eps, xp)
    y = z * inv
    ratio = (norm + eps) * _inverse(norm, xp)
    return (dy - y * (y * dy).sum(axis=1, keepdims=True) * ratio) * inv


def jacobians(weights, gs, xp=np):
    """Top-down Jacobians ``J_l = d f_L / d g_l`` for every layer, each (N, n_L, n_l)."""
    N, nL = gs[-1].shape
    J = xp.broadcast_to(xp.eye(nL, dtype=gs[-1].dtype), (N, nL, nL)).copy()
    Js = [J]
    for l in range(len(weights) - 1, 0, -1):
        JW = (J.reshape(N * nL, -1) @ weights[l]).reshape(N, nL, -1)   # one GEMM, not N
        J = JW * (gs[l - 1] > 0)[:, None, :]                           # (N, n_L, n_{l-1})
        Js.append(J)
    return Js[::-1]


# ----------------------------------------------------------------------------- validation
def check_sizes(sizes):
    try:
        sizes = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise ValueError(f"sizes must be a list of integers, got {sizes!r}") from None
    if not 2 <= len(sizes) <= MAX_LAYERS + 1:
        raise ValueError(
            f"sizes must have between 2 and {MAX_LAYERS + 1} entries (input, ..., output), "
            f"got {len(sizes)}"
        )
    for i, s in enumerate(sizes):
        if not 1 <= s <= MAX_WIDTH:
            raise ValueError(f"sizes[{i}] must be between 1 and {MAX_WIDTH}, got {s}")
    return sizes


def check_finite(name, a, xp=np):
    if not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


# ----------------------------------------------------------------------------- the network
class ReLUNet:
    """A (masked) bias-free ReLU network.

    Parameters
    ----------
    sizes : widths ``[n_0, n_1, ..., n_L]``; layer l has ``W_l`` of shape (n_l, n_{l-1}).
    masks : None or one 0/1 array per layer (shape of ``W_l``, or None for a dense layer);
        masked weights are zero at init and get zero gradient.
    bias : add per-unit biases (the theory has none; for matching other code).
    normalize : L2-normalise output rows, ``out = f_L / (||f_L|| + norm_eps)``.
    seed : weight initialisation seed; ``W_l ~ U(-1, 1) / sqrt(fan_in)`` where fan_in counts
        the unmasked inputs of each unit (PyTorch's ``nn.Linear`` rule), biases likewise.
    dtype : "float64" or "float32".  backend : "numpy", "numba" or "cupy".
    """

    def __init__(self, sizes, *, masks=None, bias=False, normalize=False, seed=0,
                 dtype="float64", backend="numpy", norm_eps=0.0, init_scale=1.0):
        self.sizes = check_sizes(sizes)
        self.backend = B.check_backend(backend)
        self.dtype = B.check_dtype(dtype)
        self.xp = B.get_xp(backend)
        self.bias = bool(bias)
        self.normalize = bool(normalize)
        if not norm_eps >= 0:
            raise ValueError(f"norm_eps must be >= 0, got {norm_eps}")
        self.norm_eps = float(norm_eps)
        L = len(self.sizes) - 1
        if masks is not None:
            if len(masks) != L:
                raise ValueError(f"masks must have one entry per layer ({L}), got {len(masks)}")
            checked = []
            for l, m in enumerate(masks):
                if m is None:
                    checked.append(None)
                    continue
                m = B.to_numpy(m)
                want = (self.sizes[l + 1], self.sizes[l])
                if m.shape != want:
                    raise ValueError(f"masks[{l}] must have shape {want}, got {m.shape}")
                if not np.isin(m, (0, 1)).all():
                    raise ValueError(f"masks[{l}] must contain only 0 and 1")
                checked.append(m.astype(self.dtype))
            masks = checked
        g = B.rng(seed)
        weights, biases = [], []
        for l in range(L):
            n_out, n_in = self.sizes[l + 1], self.sizes[l]
            m = None if masks is None else masks[l]
            fan_in = np.full((n_out, 1), n_in, float) if m is None else m.sum(1, keepdims=True)
            bound = init_scale / np.sqrt(np.maximum(fan_in, 1))
            W = g.uniform(-1.0, 1.0, (n_out, n_in)) * bound
            if m is not None:
                W *= m
            weights.append(W.astype(self.dtype))
            if self.bias:
                biases.append((g.uniform(-1.0, 1.0, n_out) * bound[:, 0]).astype(self.dtype))
        xp = self.xp
        self.weights = [xp.asarray(W) for W in weights]
        self.biases = [xp.asarray(b) for b in biases] if self.bias else None
        self.masks = None if masks is None else [None if m is None else xp.asarray(m)
                                                 for m in masks]
        self._cache = None
        self.grad_biases = None
        self.grad_input = None

    # -- basic facts
    @property
    def depth(self) -> int:
        """Number of weight layers L."""
        return len(self.weights)

    def parameters(self):
        """Weights then biases (the arrays an optimiser updates, in place)."""
        return list(self.weights) + (list(self.biases) if self.bias else [])

    def asarray(self, a):
        """``a`` on this network's device with its dtype."""
        return self.xp.asarray(a, dtype=self.dtype)

    def _check_input(self, x, name="x"):
        x = self.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"{name} must have shape (N, {self.sizes[0]}), got {tuple(x.shape)}")
        check_finite(name, x, self.xp)
        return x

    # -- passes
    def forward(self, x):
        """Output ``(N, n_L)`` for ``x`` ``(N, n_0)``; caches what ``backward`` needs."""
        x = self._check_input(x)
        gs, fs = self._forward_pass(x)
        out, norm = gs[-1], None
        if self.normalize:
            out, norm = normalize_forward(gs[-1], self.norm_eps, self.xp)
        self._cache = (gs, fs, norm)
        return out

    __call__ = forward

    def preactivations(self, x):
        """Pre-activations ``[g_1, ..., g_L]`` for ``x`` (no cache is written)."""
        x = self._check_input(x)
        return self._forward_pass(x)[0]

    def _forward_pass(self, x):
        """``forward_pass``, or its Numba twin (masked layers skip their zeros) for "numba"."""
        if self.backend == "numba":
            from .kernels import mlp
            return mlp.forward_pass(self.weights, self.biases, x,
                                    structure=mlp.net_structure(self))
        return forward_pass(self.weights, self.biases, x, self.xp)

    def backward(self, dout, *, input_grad=False):
        """Gradients of ``sum(dout * out)`` for the most recent forward.

        Returns the list ``dW_l`` (shapes of ``net.weights``). Also sets ``net.grad_biases``
        (when ``bias=True``) and ``net.grad_input`` (``(N, n_0)``, when ``input_grad``).
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first")
        gs, fs, norm = self._cache
        dout = self.xp.asarray(dout, dtype=self.dtype)
        if dout.shape != gs[-1].shape:
            raise ValueError(f"dout must have shape {tuple(gs[-1].shape)}, got {tuple(dout.shape)}")
        delta = dout
        if self.normalize:
            delta = normalize_backward(gs[-1], norm, dout, self.norm_eps, self.xp)
        if self.backend == "numba":
            from .kernels import mlp
            dWs, dbs, dx = mlp.backward_pass(self.weights, gs, fs, delta, self.masks,
                                             want_bias=self.bias, want_input=input_grad,
                                             structure=mlp.net_structure(self))
        else:
            dWs, dbs, dx = backward_pass(self.weights, gs, fs, delta, self.masks,
                                         want_bias=self.bias, want_input=input_grad)
        self.grad_biases, self.grad_input = dbs, dx
        return dWs

    def jacobians(self, x):
        """``[J_1(x), ..., J_L(x)]``, ``J_l`` of shape (N, n_L, n_l) (before normalisation)."""
        gs = self.preactivations(x)
        return jacobians(self.weights, gs, self.xp)

    # -- copies and persistence
    def state(self):
        """A dict of NumPy arrays and plain values describing the network exactly."""
        st = {"sizes": list(self.sizes), "bias": self.bias, "normalize": self.normalize,
              "norm_eps": self.norm_eps, "dtype": self.dtype.name}
        st["weights"] = [B.to_numpy(W) for W in self.weights]
        st["biases"] = [B.to_numpy(b) for b in self.biases] if self.bias else None
        st["masks"] = None if self.masks is None else [None if m is None else B.to_numpy(m)
                                                       for m in self.masks]
        return st

    @classmethod
    def from_state(cls, st, backend="numpy"):
        net = cls(st["sizes"], masks=st["masks"], bias=st["bias"], normalize=st["normalize"],
                  norm_eps=st["norm_eps"], dtype=st["dtype"], backend=backend)
        for l, W in enumerate(st["weights"]):
            if W.shape != tuple(net.weights[l].shape):
                raise ValueError(f"weights[{l}] has shape {W.shape}, expected "
                                 f"{tuple(net.weights[l].shape)}")
            net.weights[l][...] = net.asarray(W)
        if net.bias:
            for l, b in enumerate(st["biases"]):
                net.biases[l][...] = net.asarray(b)
        return net

    def copy(self, backend=None):
        return type(self).from_state(self.state(), backend or self.backend)

    def save(self, path):
        """Write the network to ``path`` (.npz, atomic, no pickles)."""
        from .checkpoint import save_state
        save_state(path, self.state(), kind="ReLUNet")

    @classmethod
    def load(cls, path, backend="numpy"):
        """Read a network written by ``save``; refuses corrupt or foreign files."""
        from .checkpoint import load_state
        return cls.from_state(load_state(path, kind="ReLUNet"), backend)

    def __repr__(self):
        opts = [f"bias={self.bias}"] * self.bias + [f"normalize=True"] * self.normalize
        masked = ", masked" if self.masks is not None else ""
        return (f"ReLUNet({self.sizes}{masked}{', ' if opts else ''}{', '.join(opts)}, "
                f"dtype={self.dtype.name}, backend={self.backend!r})")
