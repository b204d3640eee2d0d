// Per-step update rules of the flow sampler, in place on float buffers (no allocation after construction).
//
// Flow convention (models/flow.py): x_t = (1 - t) x0 + t eps, integrated from t = 1 to t = 0. The step
// graph's first output is, by the manifest's sampler kind, either
//   flow_euler     -> "velocity" v = eps - x0:  Euler x <- x + (t_next - t) v
//   flow_euler_x0  -> "denoised" d = x0:        Euler x <- d + (t_next / t) (x - d)   (velocity (x - d) / t)
// Arithmetic follows PyTorch's order (the Python-scalar factor rounded to float32, then one rounding per
// operation), so with equal network outputs the C++ and PyTorch frames are equal.
//   euler: one evaluation per step.
//   heun:  x' = Euler(x, t -> t_next); x <- x + (t_next - t) (u(x, t) + u(x', t_next)) / 2 with u the velocity,
//          on every step but the last, which is Euler (t_next = 0): 2 evaluations per step, 2n - 1 in all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor.h"

namespace nf {

enum class SamplerKind { Euler, Heun };
enum class Prediction { Velocity, Denoised };

// "euler" | "heun"; anything else is nf::InvalidArgument.
SamplerKind parse_sampler_kind(const std::string& s);
const char* sampler_kind_name(SamplerKind k);

// The manifest's sampler.kind: "flow_euler" -> Velocity, "flow_euler_x0" -> Denoised; else nf::InvalidArgument.
Prediction prediction_of_kind(const std::string& manifest_kind);
// The step graph output carrying the prediction: "velocity" or "denoised".
const char* prediction_output_name(Prediction p);

// One Euler step in place: out is the network output at (x, t).
void euler_update(float* x, const float* out, std::int64_t n, double t, double t_next, Prediction p);

// The network, seen by the sampler: its prediction at (x, t). The returned buffer holds n floats and stays
// valid until the next call.
class ModelFn {
public:
    virtual ~ModelFn() = default;
    virtual const float* predict(const float* x, double t) = 0;
};

class Sampler {
public:
    Sampler(SamplerKind kind, Prediction prediction, std::int64_t n);

    SamplerKind kind() const { return kind_; }
    Prediction prediction() const { return prediction_; }
    // Network evaluations for a schedule of n_steps steps.
    std::int64_t n_evals(std::int64_t n_steps) const;
    // Integrates x (n floats) in place along times (times.size() - 1 steps).
    void run(float* x, const std::vector<double>& times, ModelFn& f);

private:
    SamplerKind kind_;
    Prediction prediction_;
    std::int64_t n_;
    HostTensor u1_;      // heun: velocity at (x, t)
    HostTensor x_pred_;  // heun: Euler predictor
};

}  // namespace nf
