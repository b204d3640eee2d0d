"""nextframe.runtime: the Python API of the C++ core (``nextframe._core``).

``Session`` opens a bundle and runs the C++ frame loop (``step(action) -> frame``); ``DeviceSession`` the same for
frame-stack bundles with their state kept on the AOTInductor package's device (GPU); ``Bundle``, ``FrameLoop`` and
``DeviceLoop`` are the core's classes; ``reference`` is the NumPy specification the parity tests check the
core against (tests only, never on the hot path).
"""

from nextframe._core import Bundle, DeviceLoop, FrameLoop
from nextframe._core import version as core_version
from nextframe.runtime.device_session import DeviceSession
from nextframe.runtime.session import Session, find_ort_lib

__all__ = ["Bundle", "DeviceLoop", "DeviceSession", "FrameLoop", "Session", "core_version", "find_ort_lib"]
