#include "ar_loop.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common.h"
#include "interrupt.h"

namespace nf {

ArGenerator::ArGenerator(const ArBundle& bundle, const EngineParams& params, std::int64_t batch)
    : bundle_(bundle), batch_(batch) {
    NF_CHECK_ARG(batch >= 1 && batch <= 4096, "ar loop: batch must be in 1..4096 (got " + std::to_string(batch) + ")");
    NF_CHECK_ARG(params.backend == Backend::Auto || params.backend == Backend::OrtCpu || params.backend == Backend::OrtCuda,
                 std::string("ar loop: backend '") + backend_name(params.backend) +
                     "' does not serve AR image bundles (use auto, ort-cpu or ort-cuda)");
    const auto& b = bundle_;
    const std::int64_t B = batch, L = b.n_tokens, D = b.token_dim, C = b.cond_dim;
    backbone_ = make_ort_engine_from_bytes(b.read_verified(b.backbone.file), b.backbone, params);
    EngineParams same = params;  // every graph on the provider the backbone got (auto cannot split them)
    same.backend = backbone_->name() == "ort-cuda" ? Backend::OrtCuda : Backend::OrtCpu;
    head_ = make_ort_engine_from_bytes(b.read_verified(b.head.file), b.head, same);
    if (b.has_dd()) dd_ = make_ort_engine_from_bytes(b.read_verified(b.dd.file), b.dd, same);
    tokens_ = HostTensor(DType::F32, {B, L, D});
    unknown_ = HostTensor(DType::F32, {B, L});
    label_ = HostTensor(DType::I64, {B});
    z_ = HostTensor(DType::F32, {B, L, C});
    if (dd_) {
        dd_state_ = HostTensor(DType::F32, {B, L, D});
        dd_tokens_ = HostTensor(DType::F32, {B, L, D});
    }
    order_seen_.assign(std::size_t(L), 0);
    counts_ = ar_tokens_per_step(b.n_ar_steps, L);
    for (std::int64_t n : counts_)
        head_io_.push_back(HeadIo{HostTensor(DType::F32, {B * n, D}), HostTensor(DType::F32, {B * n}),
                                  HostTensor(DType::F32, {B * n, C}), HostTensor(DType::F32, {B * n, D})});
}

void ArGenerator::check_labels(const std::int64_t* labels) const {
    NF_CHECK_ARG(labels != nullptr, "ar loop: no labels");
    for (std::int64_t i = 0; i < batch_; ++i)
        NF_CHECK_ARG(labels[i] >= 0 && labels[i] < std::int64_t(bundle_.classes.size()),
                     "ar loop: label " + std::to_string(labels[i]) + " out of range (the model has " +
                         std::to_string(bundle_.classes.size()) + " classes)");
}

void ArGenerator::generate(const std::int64_t* labels, const float* noise, const std::int64_t* order,
                           const std::vector<std::int64_t>& head_steps, float* tokens_out, std::uint8_t* images_out) {
    const auto& b = bundle_;
    const std::int64_t B = batch_, L = b.n_tokens, D = b.token_dim, C = b.cond_dim, K = b.n_ar_steps;
    check_labels(labels);
    NF_CHECK_ARG(noise != nullptr && order != nullptr && images_out != nullptr, "ar loop: missing noise, order or output");
    NF_CHECK_ARG(std::int64_t(head_steps.size()) == K, "ar loop: " + std::to_string(head_steps.size()) +
                                                           " head step counts for " + std::to_string(K) + " AR steps");
    for (std::int64_t t : head_steps)
        NF_CHECK_ARG(t >= 1 && t <= 10000, "ar loop: head step counts must be in 1..10000 (got " + std::to_string(t) + ")");
    for (std::int64_t i = 0; i < B; ++i) {
        std::fill(order_seen_.begin(), order_seen_.end(), 0);
        for (std::int64_t j = 0; j < L; ++j) {
            const std::int64_t p = order[i * L + j];
            NF_CHECK_ARG(p >= 0 && p < L && !order_seen_[std::size_t(p)],
                         "ar loop: order row " + std::to_string(i) + " is not a permutation of 0.." + std::to_string(L - 1));
            order_seen_[std::size_t(p)] = 1;
        }
    }
    counters_ = ArCounters{};
    float* tok = tokens_.data<float>();
    float* unk = unknown_.data<float>();
    std::fill(tok, tok + B * L * D, 0.0f);
    std::fill(unk, unk + B * L, 1.0f);
    std::copy(labels, labels + B, label_.data<std::int64_t>());
    const float* z = z_.data<float>();
    std::int64_t start = 0;
    for (std::int64_t k = 0; k < K; ++k) {
        check_interrupt();
        backbone_->run(Bindings{{&tokens_, &unknown_, &label_}, {&z_}});
        ++counters_.backbone_calls;
        const std::int64_t n = counts_[std::size_t(k)];
        HeadIo& io = head_io_[std::size_t(k)];
        float* x = io.x.data<float>();
        float* zs = io.z.data<float>();
        float* tt = io.t.data<float>();
        const float* v = io.v.data<float>();
        for (std::int64_t i = 0; i < B; ++i) {
            for (std::int64_t j = 0; j < n; ++j) {
                const std::int64_t p = order[i * L + start + j];
                std::memcpy(x + (i * n + j) * D, noise + (i * L + p) * D, std::size_t(D) * sizeof(float));
                std::memcpy(zs + (i * n + j) * C, z + (i * L + p) * C, std::size_t(C) * sizeof(float));
            }
        }
        const std::int64_t T = head_steps[std::size_t(k)];
        for (std::int64_t s = 0; s < T; ++s) {
            // the same float times as mar_schedules.flow_times: 1 - s/T in double, then the step to the next one
            const double t = 1.0 - double(s) / double(T), t_next = 1.0 - double(s + 1) / double(T);
            std::fill(tt, tt + B * n, float(t));
            head_->run(Bindings{{&io.x, &io.t, &io.z}, {&io.v}});
            ++counters_.head_calls;
            const float dt = float(t_next - t);
            for (std::int64_t q = 0; q < B * n * D; ++q) x[q] += dt * v[q];
        }
        counters_.head_evaluations += B * n * T;
        for (std::int64_t i = 0; i < B; ++i) {
            for (std::int64_t j = 0; j < n; ++j) {
                const std::int64_t p = order[i * L + start + j];
                std::memcpy(tok + (i * L + p) * D, x + (i * n + j) * D, std::size_t(D) * sizeof(float));
                unk[i * L + p] = 0.0f;
            }
        }
        start += n;
    }
    if (tokens_out != nullptr) std::memcpy(tokens_out, tok, std::size_t(B * L * D) * sizeof(float));
    tokens_to_images(tok, images_out);
}

void ArGenerator::generate_dd(const std::int64_t* labels, const float* noise, std::int64_t n_calls, float* tokens_out,
                              std::uint8_t* images_out) {
    const auto& b = bundle_;
    NF_CHECK_ARG(dd_ != nullptr, "ar loop: bundle '" + b.dir + "' has no Distilled Decoding student (graphs.dd)");
    NF_CHECK_ARG(n_calls == 1 || n_calls == 2,
                 "ar loop: Distilled Decoding takes 1 or 2 calls (got " + std::to_string(n_calls) + ")");
    NF_CHECK_ARG(noise != nullptr && images_out != nullptr, "ar loop: missing noise or output");
    check_labels(labels);
    const std::int64_t B = batch_, L = b.n_tokens, D = b.token_dim;
    counters_ = ArCounters{};
    float* state = dd_state_.data<float>();
    float* unk = unknown_.data<float>();
    std::memcpy(state, noise, std::size_t(B * L * D) * sizeof(float));
    std::fill(unk, unk + B * L, 1.0f);
    std::copy(labels, labels + B, label_.data<std::int64_t>());
    dd_->run(Bindings{{&dd_state_, &unknown_, &label_}, {&dd_tokens_}});
    const float* out = dd_tokens_.data<float>();
    if (n_calls == 2) {
        // DD's two-step variant: the first call's tokens at the first m positions of the order (a point of the teacher's
        // trajectory, had the teacher drawn them), the original noise everywhere else; the second call goes from there
        for (std::int64_t i = 0; i < B; ++i) {
            for (std::int64_t j = 0; j < b.dd_two_step_revealed; ++j) {
                const std::int64_t p = b.dd_order[std::size_t(j)];
                std::memcpy(state + (i * L + p) * D, out + (i * L + p) * D, std::size_t(D) * sizeof(float));
                unk[i * L + p] = 0.0f;
            }
        }
        dd_->run(Bindings{{&dd_state_, &unknown_, &label_}, {&dd_tokens_}});
    }
    counters_.backbone_calls = n_calls;
    if (tokens_out != nullptr) std::memcpy(tokens_out, out, std::size_t(B * L * D) * sizeof(float));
    tokens_to_images(out, images_out);
}

void ArGenerator::tokens_to_images(const float* tokens, std::uint8_t* images) const {
    const auto& b = bundle_;
    const std::int64_t L = b.n_tokens, D = b.token_dim, p = b.patch, gw = b.width / p, Cc = b.channels;
    const float mean = float(b.token_mean), std_ = float(b.token_std);
    for (std::int64_t i = 0; i < batch_; ++i) {
        for (std::int64_t tkn = 0; tkn < L; ++tkn) {
            const std::int64_t py = tkn / gw, px = tkn % gw;
            const float* src = tokens + (i * L + tkn) * D;
            for (std::int64_t c = 0; c < Cc; ++c) {
                for (std::int64_t iy = 0; iy < p; ++iy) {
                    for (std::int64_t ix = 0; ix < p; ++ix) {
                        // the same float ops as MarModel.to_images: (token * std + mean + 1) * 127.5, rounded half to even
                        const float x = (src[(c * p + iy) * p + ix] * std_ + mean + 1.0f) * 127.5f;
                        const float r = std::nearbyint(std::min(255.0f, std::max(0.0f, x)));
                        const std::int64_t y = py * p + iy, xx = px * p + ix;
                        images[((i * b.height + y) * b.width + xx) * Cc + c] = std::uint8_t(r);
                    }
                }
            }
        }
    }
}

}  // namespace nf
