// The only file that includes pybind11 (STYLE.md section 1). It does no catching of its own:
// nf::InvalidArgument arrives as ValueError and nf::RuntimeError as RuntimeError through
// pybind11's built-in translation of their std base classes.
#include <pybind11/pybind11.h>

#include "version.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "nextframe C++ core (nf_core) bindings.";

    m.attr("__version__") = nf::version();

    m.def("version", &nf::version,
          "Project version the extension was compiled with (SKBUILD_PROJECT_VERSION).");
    m.def("build_info", &nf::build_info,
          "One line: the nextframe version, compiler id and version, C++ standard, build type.");
    m.def("ring_slot", &nf::ring_slot, py::arg("pos"), py::arg("n_slots"),
          "Ring slot of logical frame index pos: pos mod n_slots, in [0, n_slots).\n\n"
          "Raises ValueError if n_slots <= 0 or pos < 0.");
}
