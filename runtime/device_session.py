"""DeviceSession: a Session whose loop stays on the device.

backend "aoti" (nextframe._core.DeviceLoop, csrc/device_loop.h): a bundle with AOTInductor packages of its graphs for
the device (`nextframe export --aoti cuda`), frame-stack U-Net or K/V-cache transformer; the frame being denoised, the
past frames the graphs read, the transformer's K/V ring and every graph input live in device memory; on CUDA the
steady-state step is one CUDA graph replay. Frames equal Session(backend="aoti" / "aoti-cuda")'s.

backend "ort" (nextframe._core.OrtDeviceLoop, csrc/ort_device_loop.h): a bundle with a frame graph (`nextframe export
--frame-graph`), frame-stack U-Net or K/V-cache transformer, run by ONNX Runtime (CUDA provider, or the CPU one) with
its state in two device buffers swapped per frame and a transformer's K/V ring on the device, written by slot; each
binding's run a CUDA graph on CUDA. Frames equal Session(backend="ort-cpu")'s to the
graph kernels' rounding.

backend "trt" (nextframe._core.TrtDeviceLoop, csrc/trt_device_loop.h): the same frame graph built into a TensorRT
plan (`nextframe export --frame-graph --trt`), two execution contexts with fixed addresses, each one's run a CUDA
graph; CUDA only, unverified (no GPU where it was written).

Either way the host sends one frame of noise and the action per step and gets the frame back only when it asks
(step() / step_raw() fetch it, advance() does not). What it does not do (fed noise, speculation, DiSA, other step
counts, reading the ring's slots) is Session's.
"""
from __future__ import annotations

from nextframe import _core
from nextframe.runtime.session import Session, _int, find_ort_lib, to_uint8

DEVICES = ("cuda", "cpu")
BACKENDS = ("aoti", "ort", "trt")


class DeviceSession(Session):
    def __init__(self, bundle_dir: str, device: str = "cuda", seed: int = 0, threads: int = 2, cuda_graph: bool = True,
                 device_id: int = 0, backend: str = "aoti"):
        """device: cuda | cpu (cpu runs the same code on the CPU: what the tests check). cuda_graph: capture the
        steady-state step. threads: ATen's (aoti) or ONNX Runtime's (ort) CPU threads. backend: aoti | ort | trt (cuda
        only)."""
        if device not in DEVICES:
            raise ValueError(f"device session: unknown device '{device}' (expected {', '.join(DEVICES)})")
        if backend not in BACKENDS:
            raise ValueError(f"device session: unknown backend '{backend}' (expected {', '.join(BACKENDS)})")
        seed = _int("seed", seed, 0)
        threads = _int("threads", threads, 1)
        device_id = _int("device_id", device_id, 0)
        self.bundle = _core.Bundle.open(str(bundle_dir))
        self._backend = backend
        if backend == "trt":
            if device != "cuda":
                raise ValueError("device session: backend trt runs on cuda only")
            self._loop = _core.TrtDeviceLoop(self.bundle, device_id=device_id, seed=seed, cuda_graph=bool(cuda_graph))
        elif backend == "ort":
            self._loop = _core.OrtDeviceLoop(self.bundle, device=device, device_id=device_id, threads=threads, seed=seed,
                                             cuda_graph=bool(cuda_graph), ort_lib=find_ort_lib())
        else:
            self._loop = _core.DeviceLoop(self.bundle, device=device, device_id=device_id, threads=threads, seed=seed,
                                          cuda_graph=bool(cuda_graph))
        f = self.bundle.frame
        self.height, self.width, self.channels = f["height"], f["width"], f["channels"]
        self._decoder = _core.NativeDecoder(self.bundle) if self.bundle.has_native_decoder else None
        self.native_resolution = self._decoder is None and (f["native_height"], f["native_width"]) == (self.height, self.width)

    @property
    def backend(self) -> str:
        kind = {"ort": "ort-device-loop", "trt": "trt-device-loop"}.get(self._backend, "device-loop")
        return f"{kind} ({self.loop.device}{', CUDA graph' if self.loop.cuda_graph else ''})"

    @property
    def backend_note(self) -> str:
        if self._backend == "trt":
            return f"TensorRT engine {self.loop.engine_file}"
        return "frame graph" if self._backend == "ort" else f"AOTInductor package {self.loop.package}"

    def advance(self, action) -> None:
        """Generates the next frame and keeps it on the device (frame() fetches it)."""
        self.loop.step(self._action(action, allow_no_action=False), fetch=False)

    def frame(self):
        """The last generated frame, uint8 [H, W, 3] (a copy from the device)."""
        return to_uint8(self.loop.frame().reshape(self.channels, self.height, self.width).transpose(1, 2, 0))

    def feed_noise(self, values) -> None:
        raise ValueError("device session: fed noise is not supported (Session's FrameLoop takes it)")

    @property
    def pos(self) -> int:
        raise ValueError("device session: the ring's bookkeeping stays in the device loop (Session exposes it)")

    @property
    def slot_pos(self) -> list[int]:
        raise ValueError("device session: the ring's bookkeeping stays in the device loop (Session exposes it)")

    def stats(self) -> dict:
        if self._backend in ("ort", "trt"):
            return {"backend": self.backend, "cuda_graph": self.loop.cuda_graph, "steps": self.loop.steps}
        return {"backend": self.backend, "cuda_graph": self.loop.cuda_graph, "graph_replays": self.loop.graph_replays}
