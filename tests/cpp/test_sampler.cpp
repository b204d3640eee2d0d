// Pins the update rules, worked out by hand over times [1, .5, 0] from x = 1:
//   velocity output v(x) = x:  Euler 1 -> .5 -> .25;  Heun 1 -> 1 - .5 (1 + .5)/2 = .625 -> (Euler) .3125
//   denoised output d(x) = x/2: Euler 1 -> .5 + .5 (1 - .5) = .75 -> .375;
//                              Heun u1 = (1 - .5)/1 = .5, x' = .75, u2 = (.75 - .375)/.5 = .75,
//                              x = 1 - .5 (.5 + .75)/2 = .6875 -> (Euler) .34375
// Heun evaluates at t = 1, .5 (the predictor), .5: 2n - 1 evaluations. Also the float32 rounding of the
// Python-scalar factors and the kind parsers.
#include <vector>

#include "common.h"
#include "nf_test.h"
#include "sampler.h"

using nf::Prediction;
using nf::SamplerKind;

namespace {

struct Scaled final : nf::ModelFn {
    explicit Scaled(float s) : scale(s) {}
    float scale;
    std::vector<float> out = std::vector<float>(2);
    std::vector<double> ts;
    const float* predict(const float* x, double t) override {
        for (int i = 0; i < 2; ++i) out[std::size_t(i)] = scale * x[i];
        ts.push_back(t);
        return out.data();
    }
};

std::vector<float> run(SamplerKind k, Prediction p, float scale, std::vector<double>* ts = nullptr) {
    nf::Sampler s(k, p, 2);
    Scaled f(scale);
    std::vector<float> x = {1.0f, -2.0f};
    s.run(x.data(), {1.0, 0.5, 0.0}, f);
    if (ts) *ts = f.ts;
    return x;
}

}  // namespace

NF_TEST(sampler_velocity_by_hand) {
    std::vector<double> ts;
    CHECK(run(SamplerKind::Euler, Prediction::Velocity, 1.0f, &ts) == std::vector<float>({0.25f, -0.5f}));
    CHECK(ts == std::vector<double>({1.0, 0.5}));
    CHECK(run(SamplerKind::Heun, Prediction::Velocity, 1.0f, &ts) == std::vector<float>({0.3125f, -0.625f}));
    CHECK(ts == std::vector<double>({1.0, 0.5, 0.5}));
}

NF_TEST(sampler_denoised_by_hand) {
    std::vector<double> ts;
    CHECK(run(SamplerKind::Euler, Prediction::Denoised, 0.5f, &ts) == std::vector<float>({0.375f, -0.75f}));
    CHECK(ts == std::vector<double>({1.0, 0.5}));
    CHECK(run(SamplerKind::Heun, Prediction::Denoised, 0.5f, &ts) == std::vector<float>({0.34375f, -0.6875f}));
    CHECK(ts == std::vector<double>({1.0, 0.5, 0.5}));
    const nf::Sampler heun(SamplerKind::Heun, Prediction::Denoised, 2);
    CHECK_EQ(heun.n_evals(2), std::int64_t(3));
    CHECK_EQ(heun.n_evals(1), std::int64_t(1));
}

NF_TEST(euler_update_rounds_factor_to_float) {
    // velocity: dt = 1/3 - 2/3 in double, rounded to float before the multiply (torch does so for a Python scalar)
    float x[1] = {0.0f};
    const float v[1] = {3.0f};
    nf::euler_update(x, v, 1, 2.0 / 3.0, 1.0 / 3.0, Prediction::Velocity);
    CHECK(x[0] == float(1.0 / 3.0 - 2.0 / 3.0) * 3.0f);
    // denoised: d + float(t_next / t) * (x - d)
    float y[1] = {1.0f};
    const float d[1] = {0.25f};
    nf::euler_update(y, d, 1, 0.9, 0.3, Prediction::Denoised);
    const float ratio = float(0.3 / 0.9);
    CHECK(y[0] == 0.25f + ratio * 0.75f);
}

NF_TEST(sampler_kind_errors) {
    CHECK(nf::parse_sampler_kind("heun") == SamplerKind::Heun);
    CHECK(nf::prediction_of_kind("flow_euler_x0") == Prediction::Denoised);
    CHECK(std::string(nf::prediction_output_name(Prediction::Velocity)) == "velocity");
    CHECK_THROWS(nf::InvalidArgument, nf::parse_sampler_kind("consistency"),
                 "sampler: kind 'consistency' not supported (expected euler, heun)");
    CHECK_THROWS(nf::InvalidArgument, nf::prediction_of_kind("ddim"),
                 "sampler: manifest kind 'ddim' not supported (expected flow_euler, flow_euler_x0)");
}
