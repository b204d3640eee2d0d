"""nextframe.runtime: the Python API of the C++ core (``nextframe._core``).

``Session`` opens a bundle and runs the C++ frame loop (``step(action) -> frame``); ``DeviceSession`` the same for
frame-stack bundles with their state kept on the AOTInductor package's device (GPU); ``Bundle``, ``FrameLoop`` and
``DeviceLoop`` are the core's classes; ``ImageSession`` generates images from an AR image bundle (masked-AR loop
with DiSA schedules, or the Distilled Decoding student); ``reference`` is the NumPy specification the parity tests check the
core against (tests only, never on the hot path).
"""

from nextframe._core import Bundle, DeviceLoop, FrameLoop
from nextframe._core import version as core_version
from nextframe.runtime.device_session import DeviceSession
from nextframe.runtime.image_session import ImageSession
from nextframe.runtime.session import Session, find_ort_lib

__all__ = ["Bundle", "DeviceLoop", "DeviceSession", "FrameLoop", "ImageSession", "Session", "core_version", "find_ort_lib"]
