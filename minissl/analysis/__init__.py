"""Analyses that read a trained network: linear and k-NN probes (``probes``, scikit-learn:
the ``probe`` extra) and the amplification statistics of per-unit selectivity
(``selectivity``). They sit above the core and below the experiments.
"""
