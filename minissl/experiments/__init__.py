"""Experiments: config dataclasses (each field a ``backend.setting``: default, help, label,
bounds, which the CLI's flags and the app's fields are made from) and the runners the CLI, the
app and the docs use.

Submodules load on first use of one of their names (``E.HLTMConfig`` imports only
``experiments.hltm``). Every runner takes its config, ``callback=None`` (called with each record as it is made;
returning ``False`` ends the run) and ``stop=None`` (a ``threading.Event``-like flag checked
every training step), and returns its records (see ``optim``).

| module        | runners                                                                  |
|---------------|--------------------------------------------------------------------------|
| ``hltm``      | ``HLTMConfig``, ``HLTMRun`` (the run the next three nest),              |
|               | ``hltm_experiment``, ``eval_set``, sweeps                                |
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
| ``settings``  | ``leaf_fields``, ``with_settings``: a nested config's settings by name   |
| ``losses``    | ``loss_curves``: each loss and pair weight as r_+, r_- or τ varies       |
| ``realdata``  | ``RealDataConfig``, ``realdata_run``, ``realdata_table`` (methods, claims)|
"""
import importlib

_NAMES = {
    "byol": ("DATASETS", "HLTM_BYOL", "ablation_config", "ablation_cost", "ablation_grid",
             "ablation_table", "byol_ablation", "byol_doc_figures", "linear_regime",
             "make_source", "predictor_alignment", "run_ablation",
             "trace_implicit_contrastive"),
    "covariance": ("CovarianceConfig", "covariance_experiment"),
    "hltm": ("PRESETS", "HLTMConfig", "HLTMRun", "eval_set", "hltm_experiment", "run_sweep",
             "sweep_configs", "sweep_one", "sweep_table"),
    "settings": ("leaf_fields", "with_settings"),
    "losses": ("LOSS_VARIABLES", "THREE_LOSSES", "loss_curves"),
    # -- luck matters: selectivity amplification, top-layer acceleration, probes
    "acceleration": ("ARMS", "AccelerationConfig", "acceleration_experiment",
                     "acceleration_rows", "linear_acceleration"),
    "probe": ("PROBE_TARGETS", "cluster_probe", "hltm_probe", "probe_rows", "probe_view"),
    "selectivity": ("SelectivityConfig", "root_ranks", "run_selectivity_seeds",
                    "selectivity_cost", "selectivity_experiment", "selectivity_interval_table",
                    "selectivity_intervals", "selectivity_summary", "selectivity_table",
                    "unit_view"),
    # -- feature decoupling (Wen & Li 2021), SupCon against SSL on the HLTM
    "decoupling": ("DECOUPLING_LABELS", "DECOUPLING_PRESETS", "DECOUPLING_SETTINGS",
                   "DEAD_RATE", "DecouplingConfig", "EVAL_SAMPLES", "decoupling_experiment",
                   "decoupling_table", "decoupling_table_lines", "pixel_variance"),
    "supervision": ("run_supervision", "supervision_configs", "supervision_table"),
    # -- real data: digits, MNIST-1D, CIFAR-10, image folders
    "realdata": ("CLAIMS", "METHODS", "RealDataConfig", "realdata_run", "realdata_summary",
                 "realdata_table", "realdata_table_lines", "methods_rows"),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}
__all__ = [name for names in _NAMES.values() for name in names]


def __getattr__(name):
    """Load the submodule that defines ``name`` on first use (PEP 562), so that ``hltm``
    runs never import the BYOL experiments (SciPy's ODE solvers, Matplotlib)."""
    module = _MODULE_OF.get(name, name if name in _NAMES else None)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(f"{__name__}.{module}")
    value = mod if name == module else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_NAMES))
