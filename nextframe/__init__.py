"""nextframe: an action-conditioned next-frame world model, from training to a C++ runtime.

The installed package is assembled from top-level folders (see ``[tool.scikit-build.wheel.packages]``
in pyproject.toml), read in pipeline order: ``nextframe.data`` records environment episodes,
``nextframe.models`` defines the networks, ``nextframe.training`` fits them, ``nextframe.evaluation``
scores rollouts, ``nextframe.export`` turns a trained model into an ONNX bundle (``nextframe.quant``
optionally quantizes it), and ``nextframe.runtime`` runs a bundle through the C++ core
(``nextframe._core``). ``nextframe.cli`` is the ``nextframe`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nextframe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
