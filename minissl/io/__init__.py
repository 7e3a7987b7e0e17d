"""Files: networks to and from ``.npz`` files (``nets``: ``save``, ``load``, ``check_state``),
written by ``checkpoint``: atomic, bounded, pickle-free.

The edge of the library: the core describes a network as a dict of arrays
(``ReLUNet.state``) and builds one from it (``ReLUNet.from_state``, trusted); this package
writes such dicts safely and checks every one it reads before the core sees it.
"""
from .checkpoint import CheckpointError, load_state, save_state
from .nets import check_state, from_state, load, save
