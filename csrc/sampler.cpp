#include "sampler.h"

#include <cstring>

#include "common.h"

namespace nf {

SamplerKind parse_sampler_kind(const std::string& s) {
    if (s == "euler") return SamplerKind::Euler;
    if (s == "heun") return SamplerKind::Heun;
    throw InvalidArgument("sampler: kind '" + s + "' not supported (expected euler, heun)");
}

const char* sampler_kind_name(SamplerKind k) { return k == SamplerKind::Euler ? "euler" : "heun"; }

Prediction prediction_of_kind(const std::string& manifest_kind) {
    if (manifest_kind == "flow_euler") return Prediction::Velocity;
    if (manifest_kind == "flow_euler_x0") return Prediction::Denoised;
    throw InvalidArgument("sampler: manifest kind '" + manifest_kind + "' not supported (expected flow_euler, flow_euler_x0)");
}

const char* prediction_output_name(Prediction p) { return p == Prediction::Velocity ? "velocity" : "denoised"; }

void euler_update(float* x, const float* out, std::int64_t n, double t, double t_next, Prediction p) {
    if (p == Prediction::Velocity) {
        const float dt = float(t_next - t);
        for (std::int64_t i = 0; i < n; ++i) {
            const float step = dt * out[i];
            x[i] = x[i] + step;
        }
        return;
    }
    const float ratio = float(t_next / t);
    for (std::int64_t i = 0; i < n; ++i) {
        const float diff = x[i] - out[i];
        const float scaled = ratio * diff;
        x[i] = out[i] + scaled;
    }
}

Sampler::Sampler(SamplerKind kind, Prediction prediction, std::int64_t n)
    : kind_(kind), prediction_(prediction), n_(n), u1_(DType::F32, {n}), x_pred_(DType::F32, {n}) {}

std::int64_t Sampler::n_evals(std::int64_t n_steps) const {
    return kind_ == SamplerKind::Euler ? n_steps : 2 * n_steps - 1;
}

namespace {

// Velocity u of the flow ODE from a network output at (x, t), into u.
void velocity_of(float* u, const float* x, const float* out, std::int64_t n, double t, Prediction p) {
    if (p == Prediction::Velocity) {
        std::memcpy(u, out, sizeof(float) * std::size_t(n));
        return;
    }
    const float tf = float(t);
    for (std::int64_t i = 0; i < n; ++i) {
        const float diff = x[i] - out[i];
        u[i] = diff / tf;
    }
}

}  // namespace

void Sampler::run(float* x, const std::vector<double>& times, ModelFn& f) {
    const std::size_t n_steps = times.size() - 1;
    float* u1 = u1_.data<float>();
    float* xp = x_pred_.data<float>();
    for (std::size_t i = 0; i < n_steps; ++i) {
        const double t = times[i], t_next = times[i + 1];
        const float* out = f.predict(x, t);
        if (kind_ == SamplerKind::Euler || i + 1 == n_steps) {
            euler_update(x, out, n_, t, t_next, prediction_);
            continue;
        }
        // Heun (t_next > 0 here: only the last step reaches 0).
        velocity_of(u1, x, out, n_, t, prediction_);
        std::memcpy(xp, x, sizeof(float) * std::size_t(n_));
        euler_update(xp, out, n_, t, t_next, prediction_);
        const float* out2 = f.predict(xp, t_next);
        const float dt = float(t_next - t);
        const float tn = float(t_next);
        for (std::int64_t j = 0; j < n_; ++j) {
            const float u2 = prediction_ == Prediction::Velocity ? out2[j] : (xp[j] - out2[j]) / tn;
            const float mean = 0.5f * (u1[j] + u2);
            x[j] = x[j] + dt * mean;
        }
    }
}

}  // namespace nf
