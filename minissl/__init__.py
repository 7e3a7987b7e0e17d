"""minissl: the theory of self-supervised learning with dual deep networks, runnable.

Tian, Yu, Chen, Ganguli (2020), "Understanding Self-supervised Learning with Dual Deep
Networks" (arXiv 2010.00578), and its neighbours. The architecture is in docs/design.md.
"""
from .backend import BACKENDS, BackendError, cupy_available, numba_available
from .byol import BYOL, BYOLConfig, directpred_weights, train_byol
from .io import CheckpointError
from .covariance import (Factors, connection, covariance_operator, covariance_pair_weights,
                         covariance_spectrum, covariance_update, covariance_updates, kbar)
from .data import GaussianClusters, GaussianViews
from .decoupling import SparseCoding
from .hltm import HLTM
from .layers import (BatchNorm, L2Normalize, Linear, ReLU, Sequential, SymmetricThreshold,
                     WeightNormLinear)
from .losses import (LOSSES, byol_loss, collapsed_loss, contrastive_loss,
                     pair_weights, simclr_loss, supcon_loss)
from .metrics import (Correlation, collapse_diagnostics, correlation_ceiling, effective_rank,
                      eigen_alignment, normalized_correlation)
from .nets import Network, ReLUNet, tree_network
from .optim import SGD, Adam, History
from .train import TrainConfig, TrainingDiverged, train

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "BackendError", "cupy_available", "numba_available",
    "BYOL", "BYOLConfig", "directpred_weights", "train_byol",
    "CheckpointError",
    "Factors", "connection", "covariance_operator", "covariance_pair_weights",
    "covariance_spectrum", "covariance_update", "covariance_updates", "kbar",
    "GaussianClusters", "GaussianViews", "HLTM", "SparseCoding",
    "BatchNorm", "L2Normalize", "Linear", "ReLU", "Sequential", "SymmetricThreshold",
    "WeightNormLinear",
    "LOSSES", "byol_loss", "collapsed_loss", "contrastive_loss", "pair_weights",
    "simclr_loss", "supcon_loss",
    "Correlation", "collapse_diagnostics", "correlation_ceiling", "effective_rank",
    "eigen_alignment", "normalized_correlation",
    "Network", "ReLUNet", "tree_network", "SGD", "Adam", "History", "TrainConfig", "TrainingDiverged", "train",
]
