"""nextframe.runtime: the Python API of the C++ core (``nextframe._core``).

It will hold Bundle, Session, FrameLoop and Stats (re-exported from ``_core`` with thin Python sugar),
the NumPy reference used by the parity tests, and the play loop; the export+runtime issue fills it in.
For now it re-exports only the core's version, as ``core_version``.
"""

from nextframe._core import version as core_version

__all__ = ["core_version"]
