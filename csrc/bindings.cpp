// The only file that includes pybind11 (STYLE.md section 1). It does no catching of its own:
// nf::InvalidArgument arrives as ValueError and nf::RuntimeError as RuntimeError through
// pybind11's built-in translation of their std base classes. Calls that run the engine or read bundle
// files release the GIL; they never call back into Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <functional>
#include <mutex>

#include "ar_bundle.h"
#include "ar_loop.h"
#include "ar_schedule.h"
#include "bundle.h"
#include "common.h"
#include "device_loop.h"
#include "engine.h"
#include "frame_loop.h"
#include "interrupt.h"
#include "kv_cache.h"
#include "native_decoder.h"
#include "ort_device_loop.h"
#include "trt_device_loop.h"
#include "schedule.h"
#include "sha256.h"
#include "utf8.h"
#include "version.h"

namespace py = pybind11;

namespace {

using FloatArray = py::array_t<float, py::array::c_style>;
using IntArray = py::array_t<std::int64_t, py::array::c_style>;

std::string shape_of(const py::array& a) {
    nf::Shape s(a.shape(), a.shape() + a.ndim());
    return nf::shape_str(s);
}

py::dict spec_dict(const nf::TensorSpec& s) {
    py::dict d;
    d["name"] = s.name;
    d["dtype"] = nf::dtype_name(s.dtype);
    d["shape"] = s.shape;
    return d;
}

py::list spec_list(const std::vector<nf::TensorSpec>& specs) {
    py::list l;
    for (const auto& s : specs) l.append(spec_dict(s));
    return l;
}

nf::EngineParams engine_params(const std::string& backend, std::int64_t threads, const std::string& ort_lib,
                               const std::string& trt_precision) {
    nf::EngineParams p;
    p.backend = nf::parse_backend(backend);
    p.threads = threads;
    p.ort_lib = ort_lib;
    p.trt_precision = trt_precision;
    return p;
}

using ByteArray = py::array_t<std::uint8_t, py::array::c_style>;

// decode() reuses the decoder's scratch and runs with the GIL released: the lock keeps two Python threads
// from sharing it at once.
struct PyDecoder {
    explicit PyDecoder(nf::DetailTransferDecoder d) : decoder(std::move(d)) {}
    nf::DetailTransferDecoder decoder;
    std::mutex mu;
};

// what names the caller and the array, e.g. "native_decoder: frame".
void check_shape(const py::array& a, const nf::Shape& want, const std::string& what) {
    NF_CHECK_ARG(nf::Shape(a.shape(), a.shape() + a.ndim()) == want,
                 what + " shape " + shape_of(a) + " (expected " + nf::shape_str(want) + ")");
}

// A native frame filled by fn(decoder, out) with the GIL released and the decoder locked.
template <typename Fn>
ByteArray decode_native(PyDecoder& self, Fn&& fn) {
    const auto& d = self.decoder;
    ByteArray out(std::vector<py::ssize_t>{d.native_height(), d.native_width(), d.channels()});
    std::uint8_t* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(self.mu);
        fn(self.decoder, o);
    }
    return out;
}

// Holds an engine for direct runs (tests, inspection). Each run copies in and out: not for the hot path.
struct PyEngine {
    std::unique_ptr<nf::Engine> engine;
};

py::dict engine_run(PyEngine& self, const py::dict& feeds) {
    nf::Engine& e = *self.engine;
    std::vector<nf::HostTensor> ins, outs;
    for (const auto& spec : e.inputs()) {
        NF_CHECK_ARG(feeds.contains(spec.name), "engine: input '" + spec.name + "' not given");
        py::array a = py::array::ensure(feeds[spec.name.c_str()]);
        NF_CHECK_ARG(a, "engine: input '" + spec.name + "' is not an array");
        const bool dtype_ok = spec.dtype == nf::DType::F32 ? a.dtype().is(py::dtype::of<float>())
                                                           : a.dtype().is(py::dtype::of<std::int64_t>());
        NF_CHECK_ARG(dtype_ok, "engine: input '" + spec.name + "' dtype " + std::string(py::str(a.dtype())) +
                                   " (expected " + nf::dtype_name(spec.dtype) + ")");
        NF_CHECK_ARG(nf::Shape(a.shape(), a.shape() + a.ndim()) == spec.shape,
                     "engine: input '" + spec.name + "' shape " + shape_of(a) + " (expected " + nf::shape_str(spec.shape) + ")");
        nf::HostTensor t(spec.dtype, spec.shape);
        py::array c = py::array::ensure(a, py::array::c_style);
        std::memcpy(t.raw(), c.data(), t.nbytes());
        ins.push_back(std::move(t));
    }
    for (const auto& spec : e.outputs()) outs.emplace_back(spec.dtype, spec.shape);
    nf::Bindings b;
    for (auto& t : ins) b.inputs.push_back(&t);
    for (auto& t : outs) b.outputs.push_back(&t);
    {
        py::gil_scoped_release release;
        e.run(b);
    }
    py::dict result;
    for (std::size_t i = 0; i < outs.size(); ++i) {
        const auto& spec = e.outputs()[i];
        py::array a = spec.dtype == nf::DType::F32 ? py::array(py::dtype::of<float>(), spec.shape)
                                                   : py::array(py::dtype::of<std::int64_t>(), spec.shape);
        std::memcpy(a.mutable_data(), outs[i].raw(), outs[i].nbytes());
        result[spec.name.c_str()] = a;
    }
    return result;
}

// The core's interrupt hook (interrupt.h): inside a long call that released the GIL, run Python's pending signal
// handlers; the exception one raises (KeyboardInterrupt on Ctrl-C) unwinds the core and reaches the caller.
void raise_pending_signals() {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

py::tuple ar_outputs(nf::ArGenerator& g, const std::function<void(float*, std::uint8_t*)>& fn) {
    const auto& b = g.bundle();
    FloatArray tokens(std::vector<py::ssize_t>{g.batch(), b.n_tokens, b.token_dim});
    ByteArray images(std::vector<py::ssize_t>{g.batch(), b.height, b.width, b.channels});
    float* tp = tokens.mutable_data();
    std::uint8_t* ip = images.mutable_data();
    {
        py::gil_scoped_release release;
        fn(tp, ip);
    }
    return py::make_tuple(images, tokens);
}

}  // namespace

// A fresh float32 [numel] array filled by fill(data) with the GIL released (a loop's step or frame copy).
template <typename Fill>
FloatArray filled_frame(std::int64_t numel, Fill&& fill) {
    FloatArray out(std::vector<py::ssize_t>{numel});
    float* p = out.mutable_data();
    {
        py::gil_scoped_release release;
        fill(p);
    }
    return out;
}

// reset(frames [n, C, H, W], actions [n]) of a FrameLoop or DeviceLoop, shapes checked first, run without the GIL.
template <typename Loop>
void checked_reset(Loop& l, const FloatArray& frames, const IntArray& actions, const char* who) {
    const std::int64_t numel = l.frame_numel();
    NF_CHECK_ARG(frames.ndim() == 4 && frames.shape(1) * frames.shape(2) * frames.shape(3) == numel,
                 std::string(who) + ": frames shape " + shape_of(frames) + " (expected [n, C, H, W] with C*H*W = " +
                     std::to_string(numel) + ")");
    NF_CHECK_ARG(actions.ndim() == 1 && actions.shape(0) == frames.shape(0),
                 std::string(who) + ": actions shape " + shape_of(actions) + " (expected [" +
                     std::to_string(frames.shape(0)) + "])");
    const float* f = frames.data();
    const std::int64_t* a = actions.data();
    const std::int64_t n = frames.shape(0);
    py::gil_scoped_release release;
    l.reset(f, n, a);
}

// What DeviceLoop, OrtDeviceLoop and TrtDeviceLoop share: reset, step (fetch or keep on the device), frame and their shape.
template <typename Loop>
void bind_device_loop_common(py::class_<Loop>& c, const char* who) {
    c.def("reset", [who](Loop& l, const FloatArray& frames, const IntArray& actions) {
                 checked_reset(l, frames, actions, who);
             },
             py::arg("frames"), py::arg("actions"),
             "frames float32 [n, C, H, W] in [-1, 1]; actions int64 [n] in 0..no_action.")
        .def("step",
             [](Loop& l, std::int64_t action, bool fetch) -> py::object {
                 if (!fetch) {
                     py::gil_scoped_release release;
                     l.step(action, nullptr);
                     return py::none();
                 }
                 return filled_frame(l.frame_numel(), [&](float* p) { l.step(action, p); });
             },
             py::arg("action"), py::arg("fetch") = true,
             "The next frame for action, float32 flat [C*H*W] in [-1, 1]; fetch=False keeps it on the device (None).")
        .def("frame",
             [](Loop& l) { return filled_frame(l.frame_numel(), [&](float* p) { l.frame(p); }); },
             "The last generated frame (a copy from the device).")
        .def_property_readonly("frame_numel", &Loop::frame_numel)
        .def_property_readonly("n_actions", &Loop::n_actions)
        .def_property_readonly("no_action", &Loop::no_action)
        .def_property_readonly("context_depth", &Loop::context_depth)
        .def_property_readonly("device", &Loop::device)
        .def_property_readonly("cuda_graph", &Loop::cuda_graph);
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "nextframe C++ core (nf_core) bindings.";
    nf::set_interrupt_hook(&raise_pending_signals);
    // The core's errors as ValueError / RuntimeError (as pybind11's defaults would), their messages made valid
    // UTF-8: they may quote bytes of a corrupt file. pybind11's own exceptions (which derive from
    // std::runtime_error) and Python errors pass through to the default translators.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const py::builtin_exception&) {
            throw;
        } catch (const py::error_already_set&) {
            throw;
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, nf::to_valid_utf8(e.what()).c_str());
        } catch (const std::runtime_error& e) {
            PyErr_SetString(PyExc_RuntimeError, nf::to_valid_utf8(e.what()).c_str());
        }
    });

    m.attr("__version__") = nf::version();

    m.def("version", &nf::version,
          "Project version the extension was compiled with (SKBUILD_PROJECT_VERSION).");
    m.def("build_info", &nf::build_info,
          "One line: the nextframe version, compiler id and version, C++ standard, build type.");
    m.def("ring_slot", &nf::ring_slot, py::arg("pos"), py::arg("n_slots"),
          "Ring slot of logical frame index pos: pos mod n_slots, in [0, n_slots).\n\n"
          "Raises ValueError if n_slots <= 0 or pos < 0.");

    m.def("sha256_hex", [](const py::bytes& data) {
              const std::string s = data;
              return nf::sha256_hex(s.data(), s.size());
          },
          py::arg("data"), "SHA-256 of data as 64 lower-case hex digits.");
    m.def("flow_schedule", &nf::flow_schedule, py::arg("n_steps"), py::arg("shift") = 1.0,
          "Flow times from 1 to 0 (n_steps + 1 values), identical to nextframe.models.flow.flow_schedule.");
    m.def("disa_steps",
          [](std::int64_t frame_index, std::int64_t n_max, std::int64_t n_min, std::int64_t n_anneal_frames,
             const std::string& kind) {
              return nf::disa_steps(frame_index, n_max, n_min, n_anneal_frames, nf::parse_disa_kind(kind));
          },
          py::arg("frame_index"), py::arg("n_max"), py::arg("n_min"), py::arg("n_anneal_frames"), py::arg("kind") = "linear",
          "Denoising steps of the frame_index-th generated frame under DiSA annealing (linear | cosine).");

    m.def("has_tensorrt", &nf::trt_built,
          "True when the TensorRT backend (backend 'trt') was compiled in (CMake found TensorRT >= 10 and CUDA).");

    m.def("aoti_available", []() { return nf::aoti_available(); },
          "True when the AOTInductor plugin (libnf_aoti.so beside this module, or $NEXTFRAME_AOTI_LIB) loads: backend "
          "'aoti' can run a bundle's AOTInductor packages.");
    m.def("aoti_unavailable_reason", []() {
              std::string why;
              nf::aoti_available(&why);
              return why;
          },
          "Why backend 'aoti' cannot run here, in one line (empty when it can).");

    m.def("ort_library_info",
          [](const std::string& ort_lib) {
              const nf::OrtLibraryInfo info = nf::ort_library_info(ort_lib);
              py::dict d;
              d["path"] = info.path;
              d["version"] = info.version;
              d["providers"] = info.providers;
              return d;
          },
          py::arg("ort_lib") = "",
          "Load libonnxruntime if needed (NEXTFRAME_ORT_LIB, then ort_lib, then default names) and return "
          "{path, version, providers}. RuntimeError if none loads.");

    py::class_<nf::Bundle>(m, "Bundle", "A validated bundle directory (manifest parsed, every file's sha256 checked).")
        .def_static("open", &nf::Bundle::open, py::arg("dir"), py::call_guard<py::gil_scoped_release>(),
                    "Open and verify a bundle. ValueError (\"bundle: ...\") for anything wrong with it.")
        .def_readonly("dir", &nf::Bundle::dir)
        .def_readonly("game", &nf::Bundle::game)
        .def_readonly("n_actions", &nf::Bundle::n_actions)
        .def_readonly("no_action", &nf::Bundle::no_action)
        .def_readonly("actions", &nf::Bundle::actions)
        .def_property_readonly("frame", [](const nf::Bundle& b) {
            py::dict d;
            d["channels"] = b.frame.channels;
            d["height"] = b.frame.height;
            d["width"] = b.frame.width;
            d["native_height"] = b.frame.native_height;
            d["native_width"] = b.frame.native_width;
            return d;
        })
        .def_property_readonly("has_native_decoder", [](const nf::Bundle& b) { return !b.native_decoder.kind.empty(); })
        .def_property_readonly("kv_cache", [](const nf::Bundle& b) {
            py::dict d;
            d["n_layers"] = b.kv_cache.n_layers;
            d["n_heads"] = b.kv_cache.n_heads;
            d["n_slots"] = b.kv_cache.n_slots;
            d["window"] = b.kv_cache.window;
            d["tokens_per_frame"] = b.kv_cache.tokens_per_frame;
            d["head_dim"] = b.kv_cache.head_dim;
            return d;
        })
        .def_property_readonly("sampler", [](const nf::Bundle& b) {
            py::dict d;
            d["kind"] = b.sampler.kind;
            d["n_steps"] = b.sampler.n_steps;
            d["shift"] = b.sampler.shift;
            d["times"] = b.sampler.times;
            d["context_noise"] = b.sampler.context_noise;
            return d;
        })
        .def_property_readonly("step_inputs", [](const nf::Bundle& b) { return spec_list(b.step.inputs); })
        .def_property_readonly("step_outputs", [](const nf::Bundle& b) { return spec_list(b.step.outputs); })
        .def_property_readonly("step_graph_path", &nf::Bundle::step_graph_path)
        .def_property_readonly("has_kv_graph", &nf::Bundle::has_kv_graph)
        .def_property_readonly("has_frame_graph", &nf::Bundle::has_frame_graph)
        .def_property_readonly("uses_cache", &nf::Bundle::uses_cache,
                               "The step graph reads a K/V ring (transformer bundles); frame-stack bundles do not.")
        .def_property_readonly("history_depth", &nf::Bundle::history_depth,
                               "Past frames the step graph reads through its context roles.")
        .def_property_readonly("step_input_roles", [](const nf::Bundle& b) {
            py::list l;
            for (std::size_t i = 0; i < b.step.inputs.size(); ++i) {
                py::dict d;
                d["name"] = b.step.inputs[i].name;
                d["role"] = nf::role_name(b.step.input_roles[i].role);
                d["back"] = b.step.input_roles[i].back;
                l.append(d);
            }
            return l;
        })
        .def_property_readonly("step_groups", [](const nf::Bundle& b) {
            py::list l;
            for (const auto& g : b.step_groups) {
                py::dict d;
                d["file"] = g.file;
                d["t_min"] = g.t_min;
                d["t_max"] = g.t_max;
                l.append(d);
            }
            return l;
        }, "Graphs serving part of the noise-level range (t_min < t <= t_max); the step graph runs the rest.")
        .def_property_readonly("tensorrt_engines", [](const nf::Bundle& b) {
            py::list l;
            for (const auto& e : b.trt_engines) {
                py::dict d;
                d["graph"] = e.graph;
                d["file"] = e.file;
                d["precision"] = e.precision;
                d["compute_capability"] = e.compute_capability;
                d["trt_version"] = e.trt_version;
                d["gpu"] = e.gpu;
                d["key"] = e.key;
                d["sha256"] = e.sha256;
                d["bytes"] = e.bytes;
                l.append(d);
            }
            return l;
        });

    py::class_<PyEngine>(m, "Engine",
                         "The bundle's step graph on a backend, run directly (copies in and out: tests and inspection).")
        .def(py::init([](const nf::Bundle& b, const std::string& backend, std::int64_t threads, const std::string& ort_lib,
                         const std::string& trt_precision) {
                 return PyEngine{nf::make_engine(b, engine_params(backend, threads, ort_lib, trt_precision))};
             }),
             py::arg("bundle"), py::arg("backend") = "auto", py::arg("threads") = 2, py::arg("ort_lib") = "",
             py::arg("trt_precision") = "", py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("backend", [](const PyEngine& e) { return e.engine->name(); })
        .def_property_readonly("note", [](const PyEngine& e) { return e.engine->note(); })
        .def_property_readonly("inputs", [](const PyEngine& e) { return spec_list(e.engine->inputs()); })
        .def_property_readonly("outputs", [](const PyEngine& e) { return spec_list(e.engine->outputs()); })
        .def("run", &engine_run, py::arg("feeds"),
             "feeds: {input name: array of the spec's dtype and shape}; returns {output name: array}. "
             "Releases the GIL while the graph runs.");

    py::class_<PyDecoder>(m, "NativeDecoder",
                          "Model resolution -> native resolution by detail transfer (the C++ twin of "
                          "nextframe.models.native_decoder.DetailTransferDecoder). Frames are uint8; the GIL is released.")
        .def(py::init([](const nf::Bundle& b) { return std::make_unique<PyDecoder>(nf::DetailTransferDecoder::from_bundle(b)); }),
             py::arg("bundle"))
        .def(py::init([](std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t nh, std::int64_t nw, float threshold) {
                 return std::make_unique<PyDecoder>(nf::DetailTransferDecoder(c, h, w, nh, nw, threshold));
             }),
             py::arg("channels"), py::arg("height"), py::arg("width"), py::arg("native_height"), py::arg("native_width"),
             py::arg("agree_threshold"))
        .def("set_reference",
             [](PyDecoder& self, const ByteArray& native, const ByteArray& lowres) {
                 const auto& d = self.decoder;
                 check_shape(native, {d.native_height(), d.native_width(), d.channels()},
                             "native_decoder: reference native frame");
                 check_shape(lowres, {d.channels(), d.height(), d.width()}, "native_decoder: reference lowres frame");
                 const std::uint8_t* n = native.data();
                 const std::uint8_t* l = lowres.data();
                 py::gil_scoped_release release;
                 std::lock_guard<std::mutex> lock(self.mu);
                 self.decoder.set_reference(n, l);
             },
             py::arg("native"), py::arg("lowres"),
             "native uint8 [native_height, native_width, C]; lowres uint8 [C, H, W]: the same real frame at both sizes.")
        .def("decode",
             [](PyDecoder& self, const ByteArray& lowres) {
                 const auto& d = self.decoder;
                 check_shape(lowres, {d.channels(), d.height(), d.width()}, "native_decoder: frame");
                 const std::uint8_t* in = lowres.data();
                 return decode_native(self, [in](nf::DetailTransferDecoder& dec, std::uint8_t* o) { dec.decode(in, o); });
             },
             py::arg("lowres"), "uint8 [C, H, W] -> uint8 [native_height, native_width, C].")
        .def("decode_model_frame",
             [](PyDecoder& self, const FloatArray& frame) {
                 const auto& d = self.decoder;
                 NF_CHECK_ARG(frame.size() == d.channels() * d.height() * d.width(),
                              "native_decoder: frame shape " + shape_of(frame) + " (expected C*H*W = " +
                                  std::to_string(d.channels() * d.height() * d.width()) + " values)");
                 const float* in = frame.data();
                 return decode_native(self, [in](nf::DetailTransferDecoder& dec, std::uint8_t* o) { dec.decode_model_frame(in, o); });
             },
             py::arg("frame"), "float32 [C, H, W] in [-1, 1] (as FrameLoop.step returns it) -> uint8 native frame.")
        .def_property_readonly("has_reference", [](const PyDecoder& self) { return self.decoder.has_reference(); })
        .def_property_readonly("native_shape", [](const PyDecoder& self) {
            const auto& d = self.decoder;
            return std::vector<std::int64_t>{d.native_height(), d.native_width(), d.channels()};
        });

    py::class_<nf::KvCache>(m, "KvCache", "The K/V ring (for tests of its indexing against runtime/reference.py).")
        .def(py::init([](std::int64_t n_layers, std::int64_t n_heads, std::int64_t n_slots, std::int64_t window,
                         std::int64_t tokens_per_frame, std::int64_t head_dim) {
                 nf::KvCacheLayout l;
                 l.n_layers = n_layers;
                 l.n_heads = n_heads;
                 l.n_slots = n_slots;
                 l.window = window;
                 l.tokens_per_frame = tokens_per_frame;
                 l.head_dim = head_dim;
                 return std::make_unique<nf::KvCache>(l);
             }),
             py::arg("n_layers"), py::arg("n_heads"), py::arg("n_slots"), py::arg("window"), py::arg("tokens_per_frame"),
             py::arg("head_dim"))
        .def("push", [](nf::KvCache& c, const FloatArray& k, const FloatArray& v) {
                 const auto want = c.layout().frame_kv_shape();
                 NF_CHECK_ARG(nf::Shape(k.shape(), k.shape() + k.ndim()) == want && nf::Shape(v.shape(), v.shape() + v.ndim()) == want,
                              "kv_cache: k/v shape " + shape_of(k) + " (expected " + nf::shape_str(want) + ")");
                 c.push(k.data(), v.data());
             },
             py::arg("k"), py::arg("v"))
        .def("rewind", &nf::KvCache::rewind, py::arg("n"))
        .def("clear", &nf::KvCache::clear)
        .def("ages", [](const nf::KvCache& c) {
            std::vector<std::int64_t> a(std::size_t(c.layout().n_slots));
            c.ages(a.data());
            return a;
        })
        .def_property_readonly("slot_pos", &nf::KvCache::slot_pos)
        .def_property_readonly("pos", &nf::KvCache::pos)
        .def_property_readonly("n_rewindable", &nf::KvCache::n_rewindable);

    py::class_<nf::FrameLoop>(m, "FrameLoop",
                              "step(action) -> frame over a bundle's step graph: the C++ twin of "
                              "nextframe.models.sampling.CachedSampler, with optional speculation.")
        .def(py::init([](const nf::Bundle& b, const std::string& backend, std::int64_t threads, const std::string& ort_lib,
                         std::uint64_t seed, bool speculate, std::int64_t n_steps, const std::string& sampler,
                         std::int64_t disa_n_max, std::int64_t disa_n_min, std::int64_t disa_n_anneal_frames,
                         const std::string& disa_kind, std::int64_t n_warmup_frames, const std::string& trt_precision,
                         bool use_kv_graph) {
                 nf::FrameLoopParams p;
                 p.seed = seed;
                 p.speculate = speculate;
                 p.n_steps = n_steps;
                 p.sampler = nf::parse_sampler_kind(sampler);
                 p.n_warmup_frames = n_warmup_frames;
                 if (disa_n_max > 0) {
                     p.disa.enabled = true;
                     p.disa.n_max = disa_n_max;
                     p.disa.n_min = disa_n_min;
                     p.disa.n_anneal_frames = disa_n_anneal_frames;
                     p.disa.kind = nf::parse_disa_kind(disa_kind);
                 }
                 const nf::EngineParams ep = engine_params(backend, threads, ort_lib, trt_precision);
                 auto engine = nf::make_engine(b, ep);
                 auto kv_engine = use_kv_graph ? nf::make_kv_engine(b, *engine, ep) : nullptr;
                 auto groups = nf::make_group_engines(b, *engine, ep);
                 return std::make_unique<nf::FrameLoop>(b, std::move(engine), p, std::move(kv_engine), std::move(groups));
             }),
             py::arg("bundle"), py::arg("backend") = "auto", py::arg("threads") = 2, py::arg("ort_lib") = "",
             py::arg("seed") = 0, py::arg("speculate") = false, py::arg("n_steps") = 0, py::arg("sampler") = "euler",
             py::arg("disa_n_max") = 0, py::arg("disa_n_min") = 1, py::arg("disa_n_anneal_frames") = 0,
             py::arg("disa_kind") = "linear", py::arg("n_warmup_frames") = 2, py::arg("trt_precision") = "",
             py::arg("use_kv_graph") = true, py::call_guard<py::gil_scoped_release>(),
             "n_steps 0: the manifest's schedule. disa_n_max > 0 turns on DiSA (n_steps is then unused). trt_precision: "
             "which of the bundle's TensorRT engines backend 'trt' runs (empty: the first built for this GPU). "
             "use_kv_graph: write the cache with the bundle's kv graph when it has one (False: with the step graph).")
        .def("reset", [](nf::FrameLoop& l, const FloatArray& frames, const IntArray& actions) {
                 checked_reset(l, frames, actions, "frame_loop");
             },
             py::arg("frames"), py::arg("actions"),
             "frames float32 [n, C, H, W] in [-1, 1]; actions int64 [n] in 0..no_action. Clears the ring, pushes each.")
        .def("push_frame",
             [](nf::FrameLoop& l, const FloatArray& frame, std::int64_t action) {
                 NF_CHECK_ARG(frame.size() == l.frame_numel(), "frame_loop: frame shape " + shape_of(frame) +
                                                                    " (expected C*H*W = " + std::to_string(l.frame_numel()) + " values)");
                 const float* f = frame.data();
                 py::gil_scoped_release release;
                 l.push_frame(f, action);
             },
             py::arg("frame"), py::arg("action"))
        .def("step",
             [](nf::FrameLoop& l, std::int64_t action) {
                 return filled_frame(l.frame_numel(), [&](float* p) { l.step(action, p); });
             },
             py::arg("action"), "The next frame for action, float32 flat [C*H*W] in [-1, 1].")
        .def("feed_noise",
             [](nf::FrameLoop& l, const FloatArray& values) {
                 const float* p = values.data();
                 const std::int64_t n = values.size();
                 py::gil_scoped_release release;
                 l.feed_noise(p, n);
             },
             py::arg("values"), "Switch to fed noise (standard normal values, any shape, consumed in C order).")
        .def("stats_json", &nf::FrameLoop::stats_json, py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("pos", [](nf::FrameLoop& l) {
            py::gil_scoped_release release;
            return l.pos();
        })
        .def_property_readonly("slot_pos", [](nf::FrameLoop& l) {
            py::gil_scoped_release release;
            return l.slot_pos();
        })
        .def_property_readonly("speculation_pending", [](nf::FrameLoop& l) {
            py::gil_scoped_release release;
            return l.speculation_pending();
        })
        .def_property_readonly("n_noise_queued", [](nf::FrameLoop& l) {
            py::gil_scoped_release release;
            return l.n_noise_queued();
        })
        .def_property_readonly("fed_noise", &nf::FrameLoop::fed_noise)
        .def_property_readonly("frame_numel", &nf::FrameLoop::frame_numel)
        .def_property_readonly("backend", [](const nf::FrameLoop& l) { return l.engine().name(); })
        .def_property_readonly("uses_kv_graph", &nf::FrameLoop::uses_kv_graph)
        .def_property_readonly("n_step_groups", &nf::FrameLoop::n_step_groups)
        .def("group_runs", &nf::FrameLoop::group_runs, py::call_guard<py::gil_scoped_release>(),
             "Graph runs since construction: [step graph, step_groups[0], ...].")
        .def_property_readonly("backend_note", [](const nf::FrameLoop& l) { return l.engine().note(); });

    py::class_<nf::DeviceLoop> device_loop(m, "DeviceLoop",
                               "The next-frame loop of a frame-stack bundle kept on its AOTInductor package's device "
                               "(csrc/device_loop.h): state and graph inputs in device memory, one noise frame in and "
                               "(when asked) one frame out per step, the steady-state step a CUDA graph on CUDA.");
    device_loop
        .def(py::init([](const nf::Bundle& b, const std::string& device, std::int64_t device_id, std::int64_t threads,
                         std::uint64_t seed, bool cuda_graph) {
                 nf::DeviceLoopParams p;
                 p.device = device;
                 p.device_id = device_id;
                 p.threads = threads;
                 p.seed = seed;
                 p.cuda_graph = cuda_graph;
                 return std::make_unique<nf::DeviceLoop>(b, p);
             }),
             py::arg("bundle"), py::arg("device") = "cuda", py::arg("device_id") = 0, py::arg("threads") = 2,
             py::arg("seed") = 0, py::arg("cuda_graph") = true, py::call_guard<py::gil_scoped_release>());
    bind_device_loop_common(device_loop, "device_loop");
    device_loop.def_property_readonly("graph_replays", &nf::DeviceLoop::graph_replays)
        .def_property_readonly("package", &nf::DeviceLoop::package);

    py::class_<nf::OrtDeviceLoop> ort_device_loop(
        m, "OrtDeviceLoop",
        "The next-frame loop of a bundle (frame-stack or K/V-cache transformer) kept in ONNX Runtime's device memory through "
        "its frame graph (csrc/ort_device_loop.h): state in two device buffers swapped per frame, a transformer's K/V ring "
        "on the device written by slot, one noise frame in and (when asked) one "
        "frame out per step, each binding's run a CUDA graph with the CUDA provider.");
    ort_device_loop
        .def(py::init([](const nf::Bundle& b, const std::string& device, std::int64_t device_id, std::int64_t threads,
                         std::uint64_t seed, bool cuda_graph, const std::string& ort_lib) {
                 nf::OrtDeviceLoopParams p;
                 p.device = device;
                 p.device_id = device_id;
                 p.threads = threads;
                 p.seed = seed;
                 p.cuda_graph = cuda_graph;
                 p.ort_lib = ort_lib;
                 return std::make_unique<nf::OrtDeviceLoop>(b, p);
             }),
             py::arg("bundle"), py::arg("device") = "cuda", py::arg("device_id") = 0, py::arg("threads") = 2,
             py::arg("seed") = 0, py::arg("cuda_graph") = true, py::arg("ort_lib") = "",
             py::call_guard<py::gil_scoped_release>());
    bind_device_loop_common(ort_device_loop, "ort_device_loop");
    ort_device_loop.def_property_readonly("steps", &nf::OrtDeviceLoop::steps);

    py::class_<nf::TrtDeviceLoop> trt_device_loop(
        m, "TrtDeviceLoop",
        "OrtDeviceLoop's twin on TensorRT (csrc/trt_device_loop.h): the bundle's frame-graph engine, state in two device "
        "buffers swapped per frame through two execution contexts, a transformer's K/V ring on the device written by slot, "
        "each context's run a CUDA graph. Unverified (no GPU "
        "where it was written); a core built without TensorRT says so when constructed.");
    trt_device_loop
        .def(py::init([](const nf::Bundle& b, std::int64_t device_id, std::uint64_t seed, bool cuda_graph,
                         const std::string& precision) {
                 nf::TrtDeviceLoopParams p;
                 p.device_id = device_id;
                 p.seed = seed;
                 p.cuda_graph = cuda_graph;
                 p.precision = precision;
                 return std::make_unique<nf::TrtDeviceLoop>(b, p);
             }),
             py::arg("bundle"), py::arg("device_id") = 0, py::arg("seed") = 0, py::arg("cuda_graph") = true,
             py::arg("precision") = "", py::call_guard<py::gil_scoped_release>());
    bind_device_loop_common(trt_device_loop, "trt_device_loop");
    trt_device_loop.def_property_readonly("steps", &nf::TrtDeviceLoop::steps)
        .def_property_readonly("engine_file", &nf::TrtDeviceLoop::engine_file);
    m.def("ar_tokens_per_step", &nf::ar_tokens_per_step, py::arg("n_ar_steps"), py::arg("n_tokens"),
          "Tokens revealed at each AR step (MaskGIT cosine mask schedule; ar_schedule.h).");
    m.def("ar_head_steps",
          [](const std::string& kind, std::int64_t t_hi, std::int64_t t_lo, double split, std::int64_t n_ar_steps) {
              nf::HeadSchedule s{kind, t_hi, t_lo, split};
              return s.steps(n_ar_steps);
          },
          py::arg("kind"), py::arg("t_hi"), py::arg("t_lo"), py::arg("split"), py::arg("n_ar_steps"),
          "Head ODE steps per AR step: constant, linear, cosine or two_stage (DiSA; ar_schedule.h).");

    py::class_<nf::ArBundle>(m, "ArBundle", "A validated AR image bundle (nextframe.ar_bundle; every file's sha256 checked).")
        .def_static("open", &nf::ArBundle::open, py::arg("dir"), py::call_guard<py::gil_scoped_release>())
        .def_readonly("dir", &nf::ArBundle::dir)
        .def_readonly("classes", &nf::ArBundle::classes)
        .def_readonly("height", &nf::ArBundle::height)
        .def_readonly("width", &nf::ArBundle::width)
        .def_readonly("channels", &nf::ArBundle::channels)
        .def_readonly("n_tokens", &nf::ArBundle::n_tokens)
        .def_readonly("token_dim", &nf::ArBundle::token_dim)
        .def_readonly("n_ar_steps", &nf::ArBundle::n_ar_steps)
        .def_readonly("default_schedule", &nf::ArBundle::default_schedule)
        .def_readonly("dd_order", &nf::ArBundle::dd_order)
        .def_readonly("dd_two_step_revealed", &nf::ArBundle::dd_two_step_revealed)
        .def_property_readonly("has_dd", &nf::ArBundle::has_dd)
        .def_property_readonly("schedules", [](const nf::ArBundle& b) {
            py::dict d;
            for (const auto& s : b.schedules) {
                py::dict e;
                e["kind"] = s.second.kind;
                e["t_hi"] = s.second.t_hi;
                e["t_lo"] = s.second.t_lo;
                e["split"] = s.second.split;
                e["steps"] = s.second.steps(b.n_ar_steps);
                d[py::str(s.first)] = e;
            }
            return d;
        })
        .def("class_index", &nf::ArBundle::class_index, py::arg("name"));

    py::class_<nf::ArGenerator>(m, "ArGenerator",
                                "The C++ masked-AR generation loop (ar_loop.h) over an AR bundle, batch fixed at construction.")
        .def(py::init([](const nf::ArBundle& b, const std::string& backend, std::int64_t threads, std::int64_t batch,
                         const std::string& ort_lib) {
                 return std::make_unique<nf::ArGenerator>(b, engine_params(backend, threads, ort_lib, ""), batch);
             }),
             py::arg("bundle"), py::arg("backend") = "auto", py::arg("threads") = 2, py::arg("batch") = 8,
             py::arg("ort_lib") = "", py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("batch", &nf::ArGenerator::batch)
        .def_property_readonly("backend", &nf::ArGenerator::backend)
        .def_property_readonly("counters", [](const nf::ArGenerator& g) {
            py::dict d;
            d["backbone_calls"] = g.counters().backbone_calls;
            d["head_calls"] = g.counters().head_calls;
            d["head_evaluations"] = g.counters().head_evaluations;
            return d;
        })
        .def("generate",
             [](nf::ArGenerator& g, const IntArray& labels, const FloatArray& noise, const IntArray& order,
                const std::vector<std::int64_t>& head_steps) {
                 const auto& b = g.bundle();
                 check_shape(labels, {g.batch()}, "ar loop: labels");
                 check_shape(noise, {g.batch(), b.n_tokens, b.token_dim}, "ar loop: noise");
                 check_shape(order, {g.batch(), b.n_tokens}, "ar loop: order");
                 return ar_outputs(g, [&](float* t, std::uint8_t* im) {
                     g.generate(labels.data(), noise.data(), order.data(), head_steps, t, im);
                 });
             },
             py::arg("labels"), py::arg("noise"), py::arg("order"), py::arg("head_steps"),
             "labels int64 [B], noise float32 [B, L, D], order int64 [B, L], head_steps [K] -> (images uint8 [B, H, W, C], "
             "tokens float32 [B, L, D]). Releases the GIL.")
        .def("generate_dd",
             [](nf::ArGenerator& g, const IntArray& labels, const FloatArray& noise, std::int64_t n_calls) {
                 const auto& b = g.bundle();
                 check_shape(labels, {g.batch()}, "ar loop: labels");
                 check_shape(noise, {g.batch(), b.n_tokens, b.token_dim}, "ar loop: noise");
                 return ar_outputs(g, [&](float* t, std::uint8_t* im) {
                     g.generate_dd(labels.data(), noise.data(), n_calls, t, im);
                 });
             },
             py::arg("labels"), py::arg("noise"), py::arg("n_calls") = 1,
             "The Distilled Decoding student: 1 or 2 calls from noise float32 [B, L, D] -> (images, tokens).");
}
