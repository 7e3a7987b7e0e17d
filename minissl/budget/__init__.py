"""Budgets: how much memory and work one request may take, and what a request costs.

The edge of the library (docs/design.md, "Read this first"): nothing here is the paper's
mathematics. ``limits`` holds the mechanism (``Limits``, ``current_limits``, ``Cost``,
``check_memory``/``check_work``); ``costs`` the estimators of the core's requests in plain
numbers (widths, batch sizes, steps), so the core calls one line where a user's size enters.
This package imports nothing else from minissl but ``checks``.
"""
from .limits import (DEFAULT, DRAW_COST, GiB, KiB, MADDS_PER_SECOND, MiB, PUBLIC_APP,
                     STEP_OVERHEAD, Cost, Limits, ResourceLimitError, array_bytes,
                     check_memory, check_work, current_limits, format_bytes,
                     mlp_activation_bytes, mlp_step_work, mlp_weights, parse_bytes,
                     seconds_estimate, training_work)
from .costs import (MATRIX_FREE, SAMPLE_BYTES, byol_cost, check_correlation, check_dense,
                    check_net_size, check_steps, correlation_cost, dense_cost, net_bytes,
                    pass_cost, sparse_views_cost, spectrum_cost, train_cost)
