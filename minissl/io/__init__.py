"""Files: atomic, bounded, pickle-free ``.npz`` checkpoints (``checkpoint``).

The edge of the library: the core describes a network as a dict of arrays
(``ReLUNet.state``); this package writes and reads such dicts safely.
"""
from .checkpoint import CheckpointError, load_state, save_state
