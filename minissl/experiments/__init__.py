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
| ``selectivity``| ``SelectivityConfig``, ``selectivity_experiment`` (luck: amplification  |
|               | of initial selectivity, OP directions), seeds, table, ``unit_view``     |
| ``acceleration``| ``AccelerationConfig``, ``acceleration_experiment`` (top layer frozen /|
|               | trained / scaled), ``linear_acceleration``                              |
| ``probe``     | ``hltm_probe``, ``cluster_probe``, ``probe_rows``, ``probe_view``        |
| ``decoupling``| ``DecouplingConfig``, ``decoupling_experiment``, ``decoupling_table``    |
| ``supervision``| ``supervision_configs``, ``run_supervision``, ``supervision_table``     |
"""
from .byol import (DATASETS, ablation_cost, ablation_grid, ablation_table, byol_ablation,
                   byol_doc_figures, linear_regime, make_source, predictor_alignment,
                   run_ablation, trace_implicit_contrastive)
from .covariance import CovarianceConfig, covariance_experiment
from .hltm import (PRESETS, HLTMConfig, eval_set, hltm_experiment, run_sweep, sweep_configs,
                   sweep_one, sweep_table)
# -- luck matters: selectivity amplification, top-layer acceleration, probes
from .acceleration import (ARMS, AccelerationConfig, acceleration_experiment, acceleration_rows,
                           linear_acceleration)
from .probe import PROBE_TARGETS, cluster_probe, hltm_probe, probe_rows, probe_view
from .selectivity import (SelectivityConfig, run_selectivity_seeds, selectivity_cost,
                          selectivity_experiment, selectivity_summary, selectivity_table,
                          unit_view)
# -- feature decoupling (Wen & Li 2021), SupCon against SSL on the HLTM
from .decoupling import (DECOUPLING_LABELS, DECOUPLING_SETTINGS, DecouplingConfig,
                         decoupling_experiment, decoupling_table, decoupling_table_lines)
from .supervision import run_supervision, supervision_configs, supervision_table

__all__ = ["DATASETS", "ablation_cost", "ablation_grid", "ablation_table", "byol_ablation", "byol_doc_figures", "linear_regime",
           "make_source", "predictor_alignment", "run_ablation", "trace_implicit_contrastive",
           "CovarianceConfig", "covariance_experiment", "PRESETS", "HLTMConfig", "eval_set",
           "hltm_experiment", "run_sweep", "sweep_configs", "sweep_one", "sweep_table",
           "ARMS", "AccelerationConfig", "acceleration_experiment", "acceleration_rows",
           "linear_acceleration", "PROBE_TARGETS", "cluster_probe", "hltm_probe", "probe_rows",
           "probe_view", "SelectivityConfig", "run_selectivity_seeds", "selectivity_cost",
           "selectivity_experiment",
           "selectivity_summary", "selectivity_table", "unit_view",
           "DECOUPLING_SETTINGS", "DECOUPLING_LABELS", "DecouplingConfig", "decoupling_experiment",
           "decoupling_table", "decoupling_table_lines", "supervision_configs", "run_supervision",
           "supervision_table"]
