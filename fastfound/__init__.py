__version__ = "0.1.0"
# `import fastfound` brings the whole library, so every `Learner` method exists however the Learner is reached
# (see nbs/14_all.ipynb). The NumPy chapter, `fastfound.np_foundations`, also imports where torch cannot.
try: import torch as _torch
except ImportError: _torch = None
if _torch is not None: from .all import *  # noqa: F403
