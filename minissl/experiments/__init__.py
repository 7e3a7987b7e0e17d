"""Experiments: commented config dataclasses and the runners the CLI, the app and the docs use.

Every runner takes its config, ``callback=None`` (called with each record as it is made;
returning ``False`` ends the run) and ``stop=None`` (a ``threading.Event``-like flag checked
every training step), and returns its records (see ``optim``).

| module        | runners                                                                  |
|---------------|--------------------------------------------------------------------------|
| ``hltm``      | ``HLTMConfig``, ``hltm_experiment``, ``eval_set``, sweeps                |
| ``covariance``| ``CovarianceConfig``, ``covariance_experiment``                          |
| ``byol``      | ``run_ablation``, ``byol_ablation``, ``linear_regime``,                  |
|               | ``trace_implicit_contrastive``, ``predictor_alignment``, doc figures    |
| ``decoupling``| ``DecouplingConfig``, ``decoupling_experiment``, ``decoupling_table``    |
| ``supervision``| ``supervision_configs``, ``run_supervision``, ``supervision_table``     |
"""
from .byol import (DATASETS, ablation_table, byol_ablation, byol_doc_figures, linear_regime,
                   make_source, predictor_alignment, run_ablation, trace_implicit_contrastive)
from .covariance import CovarianceConfig, covariance_experiment
from .decoupling import (DECOUPLING_LABELS, DECOUPLING_SETTINGS, DecouplingConfig,
                         decoupling_experiment, decoupling_table, decoupling_table_lines)
from .hltm import (PRESETS, HLTMConfig, eval_set, hltm_experiment, run_sweep, sweep_configs,
                   sweep_one, sweep_table)
from .supervision import run_supervision, supervision_configs, supervision_table

__all__ = ["DATASETS", "ablation_table", "byol_ablation", "byol_doc_figures", "linear_regime",
           "make_source", "predictor_alignment", "run_ablation", "trace_implicit_contrastive",
           "CovarianceConfig", "covariance_experiment", "PRESETS", "HLTMConfig", "eval_set",
           "hltm_experiment", "run_sweep", "sweep_configs", "sweep_one", "sweep_table",
           "DECOUPLING_SETTINGS", "DECOUPLING_LABELS", "DecouplingConfig", "decoupling_experiment",
           "decoupling_table", "decoupling_table_lines", "supervision_configs", "run_supervision",
           "supervision_table"]
