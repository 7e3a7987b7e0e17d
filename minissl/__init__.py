"""minissl: the theory of self-supervised learning with dual deep networks, runnable.

Tian, Yu, Chen, Ganguli (2020), "Understanding Self-supervised Learning with Dual Deep
Networks" (arXiv 2010.00578). See README.md and docs/.
"""
from .backend import BACKENDS, BackendError, cupy_available, numba_available
from .checkpoint import CheckpointError
from .data import GaussianClusters
from .covariance import (connection, covariance_operator, covariance_pair_weights,
                         covariance_spectrum, covariance_update)
from .batchnorm import BatchNorm
from .byol import (BYOL, BYOLConfig, collapse_diagnostics, directpred_weights, eigen_alignment,
                   run_ablation, train_byol)
from .hltm import HLTM, correlation_ceiling, normalized_correlation
from .losses import LOSSES, contrastive_loss, pair_weights, simclr_loss
from .nets import ReLUNet
from .train import History, TrainConfig, TrainingDiverged, train

__version__ = "0.1.0"
