"""Deep (masked) ReLU networks built from ``layers.py``, their Jacobians, save and load.

The network (docs/design.md), batch-major:

    f_0 = x                                     # (N, n_0)
    g_l = f_{l-1} @ W_l.T (+ b_l)               # (N, n_l),  W_l: (n_l, n_{l-1})
    f_l = relu(BN(g_l)) for l < L (BN optional),  f_L = g_L   # top layer linear
    out = f_L / (||f_L|| + eps)  if normalize   # optional output L2 normalisation

``ReLUNet`` is the ``Sequential`` ``Linear -> [BatchNorm] -> ReLU -> ... -> Linear ->
[L2Normalize]``; its ``backward`` is the layers' backward (``layers.linear_backward``: masked
``dW = delta^T f``, ``delta_prev = (delta W) * (g_prev > 0)``).

Top-down Jacobian ``J_l(x) = d f_L / d g_l`` (with layer l's own ReLU gate), for a net
without BN: ``J_L = I``, ``J_l = J_{l+1} W_{l+1} D_l``, ``D_l = diag(g_l > 0)`` (``jacobians``).
"""
from __future__ import annotations

import numpy as np

from . import backend as B
from .layers import BatchNorm, L2Normalize, Linear, ReLU, Sequential
from .budget import check_memory, check_net_size, mlp_activation_bytes

MAX_LAYERS = 64          # depth limit (number of weight matrices)
MAX_WIDTH = 1 << 20      # width limit per layer


def jacobians(weights, gs, xp=np):
    """Top-down Jacobians ``J_l = d f_L / d g_l`` for every layer, each (N, n_L, n_l), of a
    ReLU net without BN, from its pre-activations ``gs = [g_1, ..., g_L]``."""
    N, nL = gs[-1].shape
    J = xp.broadcast_to(xp.eye(nL, dtype=gs[-1].dtype), (N, nL, nL)).copy()
    Js = [J]
    for l in range(len(weights) - 1, 0, -1):
        JW = (J.reshape(N * nL, -1) @ weights[l]).reshape(N, nL, -1)   # one GEMM, not N
        J = JW * (gs[l - 1] > 0)[:, None, :]                           # (N, n_L, n_{l-1})
        Js.append(J)
    return Js[::-1]


def check_sizes(sizes):
    """``sizes`` as a list of ints ``[n_0, ..., n_L]`` (integral, 1 <= n <= MAX_WIDTH)."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise ValueError(f"sizes must be a list of integers [n_0, ..., n_L], got "
                         f"{B.shown(sizes)}")
    if not 2 <= len(sizes) <= MAX_LAYERS + 1:
        raise ValueError(f"sizes must have between 2 and {MAX_LAYERS + 1} entries (input, ..., "
                         f"output), got {len(sizes)}")
    return [B.check_int(f"sizes[{i}]", s, 1, MAX_WIDTH) for i, s in enumerate(sizes)]


def _check_masks(masks, sizes):
    L = len(sizes) - 1
    if masks is None:
        return [None] * L
    if len(masks) != L:
        raise ValueError(f"masks must have one entry per layer ({L}), got {len(masks)}")
    out = []
    for l, m in enumerate(masks):
        if m is not None:
            m = B.to_numpy(m)
            want = (sizes[l + 1], sizes[l])
            if m.shape != want:
                raise ValueError(f"masks[{l}] must have shape {want}, got {m.shape}")
            if not np.isin(m, (0, 1)).all():
                raise ValueError(f"masks[{l}] must contain only 0 and 1")
        out.append(m)
    return out


class Network(Sequential):
    """Layers the training loop can train: a ``Sequential`` that knows its widths ``sizes``
    (``[n_0, ..., n_L]``), its ``backend``, ``dtype`` and array module ``xp``, checks its
    input (``check_input``, against ``limits``: None, the environment's) and is not ``plain`` (the covariance identities are
    ``ReLUNet``'s). ``compiled_steps``: whether the compiled training steps of ``kernels``
    apply to it (they are written for ``ReLUNet``)."""
    bias = normalize = False
    batchnorm = masks = None
    compiled_steps = False
    limits = None

    def __init__(self, layers, sizes, *, dtype="float64", backend="numpy"):
        super().__init__(layers)
        self.sizes, self.dtype = check_sizes(sizes), B.check_dtype(dtype)
        self.backend = B.check_backend(backend)
        self.xp = B.get_xp(backend)
        self.rows_checked = 0          # the largest batch whose caches passed the limits

    @property
    def depth(self) -> int:
        """Number of weight layers L."""
        return len(self.sizes) - 1

    @property
    def plain(self) -> bool:
        return False

    def asarray(self, a):
        """``a`` on this network's device with its dtype."""
        return self.xp.asarray(a, dtype=self.dtype)

    def check_input(self, x, name="x"):
        """``x`` as a finite (N, n_0) array on the net's device, else ``ValueError``; the
        forward caches of its N rows are checked against the net's ``limits`` (once per
        batch size larger than any checked before: a training loop pays it on its first step)."""
        x = self.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"{name} must have shape (N, {self.sizes[0]}), got {tuple(x.shape)}")
        if x.shape[0] > self.rows_checked:
            check_memory(2 * mlp_activation_bytes(self.sizes, x.shape[0], self.dtype),
                         "the forward and backward passes", f"{name} with N={x.shape[0]} rows",
                         self.limits)
            self.rows_checked = x.shape[0]
        return B.check_finite(name, x, self.xp)

    def forward(self, x):
        """Output ``(N, n_L)`` for ``x`` ``(N, n_0)`` (checked: ``check_input``); the layers
        cache what ``backward`` needs."""
        return self.apply(self.check_input(x))

    def apply(self, x):
        """``forward`` of an input already checked (the training loop checks a batch once)."""
        return super().forward(x)

    __call__ = forward


class ReLUNet(Network):
    """A (masked) ReLU network, bias-free by default.

    Parameters
    ----------
    sizes : widths ``[n_0, n_1, ..., n_L]``; layer l has ``W_l`` of shape (n_l, n_{l-1}).
    masks : None or one 0/1 array per layer (shape of ``W_l``, or None for a dense layer).
    bias : per-unit biases (the theory has none; for matching other code).
    normalize : L2-normalise output rows, ``out = f_L / (||f_L|| + norm_eps)``.
    batchnorm : None, or a dict of ``layers.BatchNorm`` options (mean, var, affine, groups,
        omit_var) for a BN after every hidden ``Linear`` (a BN that would be the identity is
        left out). The covariance identities need ``bias=False, normalize=False,
        batchnorm=None``.
    seed : int or ``np.random.Generator`` for the init (``layers.Linear``: over the live
        inputs of each unit, W then b per layer); ``init_scale`` multiplies its bound.
    dtype : "float64" or "float32".  backend : "numpy", "numba" or "cupy".
    limits : a ``minissl.budget.Limits`` or None (the environment's): ``net_bytes`` is checked
        against it before anything is allocated (``ResourceLimitError``).
    """

    compiled_steps = True

    def __init__(self, sizes, *, masks=None, bias=False, normalize=False, batchnorm=None,
                 seed=0, dtype="float64", backend="numpy", norm_eps=0.0, init_scale=1.0,
                 limits=None):
        self.sizes = check_sizes(sizes)
        self.dtype = B.check_dtype(dtype)
        if masks is not None and (isinstance(masks, (str, bytes)) or not hasattr(masks, "__len__")):
            raise ValueError(f"masks must be None or a list of one array (or None) per layer, "
                             f"got {type(masks).__name__}")
        check_net_size(self.sizes, masks, self.dtype, limits)
        self.limits = limits
        self.backend = B.check_backend(backend)
        self.xp = B.get_xp(backend)
        self.bias, self.normalize = B.check_bool("bias", bias), B.check_bool("normalize", normalize)
        self.norm_eps = B.check_real("norm_eps", norm_eps, 0)
        self.init_scale = init_scale = B.check_real("init_scale", init_scale, 0, lo_open=True)
        self.batchnorm = check_batchnorm(batchnorm)
        g = B.rng(seed)
        masks = _check_masks(masks, self.sizes)
        layers, L = [], len(self.sizes) - 1
        for l in range(L):
            layers.append(Linear(self.sizes[l], self.sizes[l + 1], mask=masks[l], bias=self.bias,
                                 rng=g, init_scale=init_scale, dtype=self.dtype,
                                 backend=backend))
            if l < L - 1:
                if self.batchnorm is not None:
                    bn = BatchNorm(self.sizes[l + 1], **self.batchnorm, dtype=self.dtype,
                                   xp=self.xp)
                    if not bn.identity:
                        layers.append(bn)
                layers.append(ReLU(self.xp))
        if self.normalize:
            layers.append(L2Normalize(self.norm_eps, self.xp))
        super().__init__(layers, self.sizes, dtype=self.dtype, backend=backend)
        self.layers[0].need_input_grad = False
        self.grad_biases, self.grad_input = None, None

    # -- basic facts
    @property
    def weights(self):
        return [lin.W for lin in self.linears()]

    @property
    def biases(self):
        return [lin.b for lin in self.linears()] if self.bias else None

    @property
    def masks(self):
        ms = [lin.mask for lin in self.linears()]
        return None if all(m is None for m in ms) else ms

    @property
    def plain(self) -> bool:
        """True for a bias-free ReLU net without BN or output normalisation: the nets for
        which ``f_L = K_l^T vec(W_l)`` and the covariance-operator identities hold."""
        return not (self.bias or self.normalize or self.batchnorm is not None)

    def parameters(self):
        """Weights, then biases, then BN's affine parameters (the arrays an optimiser updates,
        in place); ``grads()`` is aligned with it."""
        return (self.weights + (self.biases or [])
                + [p for bn in self.batchnorms() for p in bn.parameters()])

    def grads(self):
        lins = self.linears()
        return ([lin.grads[0] for lin in lins] + [lin.grads[1] for lin in lins if self.bias]
                + [g for bn in self.batchnorms() for g in bn.grads])

    def passes(self, x):
        """``(gs, fs)``: pre-activations ``g_1..g_L`` (each Linear's output, before BN) and the
        Linear inputs ``f_0..f_{L-1}``, from one ``forward`` of ``x``."""
        self.forward(x)
        caches = [lin.cache for lin in self.linears()]
        return [c[1] for c in caches], [c[0] for c in caches]

    def preactivations(self, x):
        """Pre-activations ``[g_1, ..., g_L]`` for ``x`` (runs ``forward``)."""
        return self.passes(x)[0]

    def backward(self, dout, *, input_grad=False):
        """Gradients of ``sum(dout * out)`` for the most recent forward.

        Returns the list ``dW_l`` (shapes of ``net.weights``). Also sets ``net.grad_biases``
        (when ``bias=True``) and ``net.grad_input`` (``(N, n_0)``, when ``input_grad``).
        """
        first = self.layers[0]
        if first.cache is None:
            raise RuntimeError("backward() needs a forward() first")
        dout = self.xp.asarray(dout, dtype=self.dtype)
        want = tuple(self.layers[-1].cache[0].shape if self.normalize else
                     self.linears()[-1].cache[1].shape)
        if tuple(dout.shape) != want:
            raise ValueError(f"dout must have shape {want}, got {tuple(dout.shape)}")
        first.need_input_grad = bool(input_grad)
        self.grad_input = super().backward(dout)
        lins = self.linears()
        self.grad_biases = [lin.grads[1] for lin in lins] if self.bias else None
        return [lin.grads[0] for lin in lins]

    def jacobians(self, x):
        """``[J_1(x), ..., J_L(x)]``, ``J_l`` (N, n_L, n_l) (before any output normalisation;
        a net without BN)."""
        if self.batchnorm is not None:
            raise ValueError("jacobians need a net without BatchNorm (batchnorm=None)")
        return jacobians(self.weights, self.preactivations(x), self.xp)

    # -- copies and states
    def state(self):
        """A dict of NumPy arrays and plain values describing the network exactly: its options
        (sizes, bias, normalize, norm_eps, dtype, batchnorm, init_scale), ``weights``,
        ``biases``, ``masks`` and ``bn`` (per BN layer its ``gamma``, ``beta`` and frozen
        ``fixed_stats``, each None where absent). ``minissl.io`` saves and loads it."""
        st = {"sizes": list(self.sizes), "bias": self.bias, "normalize": self.normalize,
              "norm_eps": self.norm_eps, "dtype": self.dtype.name,
              "batchnorm": self.batchnorm, "init_scale": self.init_scale}
        st["weights"] = [B.to_numpy(W) for W in self.weights]
        st["biases"] = [B.to_numpy(b) for b in self.biases] if self.bias else None
        st["masks"] = None if self.masks is None else [None if m is None else B.to_numpy(m)
                                                       for m in self.masks]
        st["bn"] = [{"gamma": _numpy(bn.gamma), "beta": _numpy(bn.beta), "fixed_stats":
                     None if bn.fixed_stats is None else [_numpy(a) for a in bn.fixed_stats]}
                    for bn in self.batchnorms()]
        return st

    @classmethod
    def from_state(cls, st, backend="numpy", limits=None):
        """The network a ``state()`` describes (trusted: ``minissl.io`` checks a state read
        from a file before it gets here); its widths are checked against ``limits``."""
        net = cls(st["sizes"], masks=st["masks"], bias=st["bias"], normalize=st["normalize"],
                  norm_eps=st["norm_eps"], batchnorm=st["batchnorm"],
                  init_scale=st["init_scale"], dtype=st["dtype"], backend=backend, limits=limits)
        for a, p in zip(st["weights"] + (st["biases"] or []), net.weights + (net.biases or [])):
            p[...] = net.asarray(a)
        for bn, d in zip(net.batchnorms(), st["bn"]):
            if bn.affine:
                bn.gamma[...], bn.beta[...] = net.asarray(d["gamma"]), net.asarray(d["beta"])
            bn.fixed_stats = None if d["fixed_stats"] is None else tuple(
                None if a is None else net.asarray(a) for a in d["fixed_stats"])
        return net

    def copy(self, backend=None):
        if backend is None or backend == self.backend:
            return super().copy()
        return type(self).from_state(self.state(), backend)

    def __repr__(self):
        opts = ["bias=True"] * self.bias + ["normalize=True"] * self.normalize
        opts += [f"batchnorm={self.batchnorm}"] * (self.batchnorm is not None)
        masked = ", masked" if self.masks is not None else ""
        return (f"ReLUNet({self.sizes}{masked}{', ' if opts else ''}{', '.join(opts)}, "
                f"dtype={self.dtype.name}, backend={self.backend!r})")


BN_OPTIONS = ("mean", "var", "affine", "eps", "groups", "omit_var")


def check_batchnorm(batchnorm):
    """``batchnorm`` as None or a dict of ``layers.BatchNorm`` options (``BN_OPTIONS``)."""
    if batchnorm is None:
        return None
    if not isinstance(batchnorm, dict):
        raise ValueError(f"batchnorm must be None or a dict of BatchNorm options {BN_OPTIONS}, "
                         f"got {type(batchnorm).__name__}")
    unknown = sorted(set(batchnorm) - set(BN_OPTIONS))
    if unknown:
        raise ValueError(f"batchnorm has unknown options {unknown}; allowed: {BN_OPTIONS}")
    return dict(batchnorm)


def _numpy(a):
    return None if a is None else B.to_numpy(a)


def tree_network(tree, hid=10, **options):
    """A masked ``ReLUNet`` mirroring an HLTM ``tree``: ``hid`` units per latent, each group
    connected only to its children's groups (``tree.network_sizes(hid)``,
    ``tree.network_masks(hid)``); output = the root group's pre-activation. ``options`` go to
    ``ReLUNet`` (bias, normalize, norm_eps, batchnorm, backend, dtype, seed, init_scale,
    limits); the size is checked before the masks are made."""
    hid = B.check_int("hid", hid, 1, 4096)
    sizes = tree.network_sizes(hid)
    check_net_size(sizes, [True] * (len(sizes) - 1), B.check_dtype(options.get("dtype", "float64")),
                   options.get("limits"), f"depth={tree.depth}, num_children={tree.num_children}, "
                                          f"hid={hid}")
    return ReLUNet(sizes, masks=tree.network_masks(hid), **options)
