// Pins the frame loop with a fake engine (no ONNX): the noise order and the arithmetic of one frame worked
// out by hand (velocity 0: a frame is its clamped initial noise; a push writes (1 - cn) frame + cn e);
// slot_pos after a reset and steps; speculation giving, bit for bit, the frames of the plain loop with
// hits and misses (and across a reset); no heap or HostTensor allocation per frame after warm-up; and the
// errors (unknown action, exhausted fed noise).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "bundle.h"
#include "common.h"
#include "engine.h"
#include "frame_loop.h"
#include "nf_test.h"
#include "tiny_manifest.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // our operator delete frees what our new mallocs
#endif

// Counts every operator new in this test binary (the loop itself must do none per frame).
static std::atomic<long> g_n_new{0};
void* operator new(std::size_t n) {
    g_n_new.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

// A deterministic stand-in for the step graph that reads every input the way the real one does:
// velocity = scale * (0.5 x - t + 0.1 action + 0.05 prev + sum over attended slots of k[slot] / (age + 1)),
// where a slot is attended iff 1 <= age <= window; k_new = x + 0.01 action (tiled), v_new = -k_new.
class FakeEngine final : public nf::Engine {
public:
    FakeEngine(const nf::Bundle& b, float scale)
        : Engine(b.step.inputs, b.step.outputs, "fake"), kv_(b.kv_cache), numel_(b.frame.channels * b.frame.height * b.frame.width),
          scale_(scale) {}
    long n_runs = 0;
    // What the last run saw (preallocated: recording allocates nothing).
    std::vector<float> last_x = std::vector<float>(4096);
    float last_t = -1;
    std::int64_t last_action = -1;
    std::vector<std::int64_t> last_ages = std::vector<std::int64_t>(16);

private:
    void bind(const nf::Bindings& b) override { b_ = b; }
    void execute() override {
        ++n_runs;
        auto in = [&](const char* name) -> nf::HostTensor& {
            for (std::size_t i = 0; i < inputs().size(); ++i)
                if (inputs()[i].name == name) return *b_.inputs[i];
            throw nf::RuntimeError("fake: no input");
        };
        const float* x = in("x").data<float>();
        const float t = in("t").data<float>()[0];
        const auto a = in("action").data<std::int64_t>()[0];
        const float* prev = in("prev").data<float>();
        const float* k = in("cache_k").data<float>();
        const auto* ages = in("ages").data<std::int64_t>();
        std::copy(x, x + numel_, last_x.begin());
        std::copy(ages, ages + kv_.n_slots, last_ages.begin());
        last_t = t;
        last_action = a;
        const std::int64_t per_slot = kv_.tokens_per_frame * kv_.head_dim;
        float* vel = b_.outputs[0]->data<float>();
        float* k_new = b_.outputs[1]->data<float>();
        float* v_new = b_.outputs[2]->data<float>();
        for (std::int64_t i = 0; i < numel_; ++i) {
            float c = 0;
            for (std::int64_t s = 0; s < kv_.n_slots; ++s)
                if (ages[s] >= 1 && ages[s] <= kv_.window) c += k[s * per_slot + i % per_slot] / float(ages[s] + 1);
            vel[i] = scale_ * (0.5f * x[i] - t + 0.1f * float(a) + 0.05f * prev[i] + c);
        }
        const std::int64_t n_kv = b_.outputs[1]->numel();
        for (std::int64_t j = 0; j < n_kv; ++j) {
            k_new[j] = x[j % numel_] + 0.01f * float(a);
            v_new[j] = -k_new[j];
        }
    }
    nf::KvCacheLayout kv_;
    std::int64_t numel_;
    float scale_;
    nf::Bindings b_;
};

nf::Bundle tiny_bundle(int n_steps = 2, double context_noise = 0.1, bool x0 = false) {
    nf_test::TinyManifest m;
    m.x0 = x0;
    m.n_steps = n_steps;
    m.context_noise = context_noise;
    return nf::Bundle::parse(m.text(), "/nonexistent");
}

std::unique_ptr<nf::FrameLoop> make_loop(const nf::Bundle& b, nf::FrameLoopParams p, float scale = 1.0f) {
    return std::make_unique<nf::FrameLoop>(b, std::make_unique<FakeEngine>(b, scale), p);
}

std::vector<float> context(const nf::Bundle& b, int n) {
    std::vector<float> f(std::size_t(n * b.frame.channels * b.frame.height * b.frame.width));
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = float(int(i % 17) - 8) / 8.0f;
    return f;
}

std::vector<std::vector<float>> rollout(nf::FrameLoop& loop, const nf::Bundle& b, const std::vector<std::int64_t>& actions,
                                        std::size_t reset_at = 0) {
    const std::vector<float> ctx = context(b, 2);
    const std::vector<std::int64_t> ctx_actions = {3, 0};
    loop.reset(ctx.data(), 2, ctx_actions.data());
    std::vector<std::vector<float>> frames;
    for (std::size_t i = 0; i < actions.size(); ++i) {
        if (reset_at && i == reset_at) loop.reset(ctx.data(), 2, ctx_actions.data());
        frames.emplace_back(std::size_t(loop.frame_numel()));
        loop.step(actions[i], frames.back().data());
    }
    return frames;
}

}  // namespace

NF_TEST(frame_loop_noise_order_by_hand) {
    // velocity 0 (scale 0): each frame is its clamped initial noise; pushes see (1 - cn) frame + cn e.
    const nf::Bundle b = tiny_bundle(2, 0.25);
    auto loop = make_loop(b, {}, 0.0f);
    const std::int64_t n = loop->frame_numel();  // 48
    std::vector<float> noise;
    for (int chunk = 0; chunk < 5; ++chunk)
        for (std::int64_t i = 0; i < n; ++i) noise.push_back(float(chunk) * 0.7f - 1.0f + float(i) * 1e-3f);  // chunk 3 > 1
    loop->feed_noise(noise.data(), std::int64_t(noise.size()));
    const std::vector<float> ctx = context(b, 1);
    const std::int64_t a0 = 3;
    loop->reset(ctx.data(), 1, &a0);  // consumes chunk 0 (context noise)
    std::vector<float> out(static_cast<std::size_t>(n));
    loop->step(1, out.data());        // chunk 1 = initial noise, chunk 2 = its context noise
    for (std::int64_t i = 0; i < n; ++i) CHECK(out[std::size_t(i)] == std::min(1.0f, noise[std::size_t(n + i)]));
    loop->step(2, out.data());        // chunk 3 initial (1.1 + ...: clamped to 1), chunk 4 context
    for (std::int64_t i = 0; i < n; ++i) CHECK(out[std::size_t(i)] == 1.0f);
    CHECK_EQ(loop->n_noise_queued(), std::int64_t(0));
    CHECK(loop->slot_pos() == std::vector<std::int64_t>({0, 1, 2}));
    CHECK_THROWS(nf::InvalidArgument, loop->step(0, out.data()), "noise: fed noise exhausted (need 96 values, 0 queued)");
}

NF_TEST(frame_loop_push_arithmetic) {
    // With cn = 0.25 the pushed x is 0.75 * frame + 0.25 * e, in float32, one rounding per operation;
    // the fake engine stores x (tiled) as k_new, so the cache shows it.
    const nf::Bundle b = tiny_bundle(1, 0.25);
    auto engine = std::make_unique<FakeEngine>(b, 0.0f);
    const FakeEngine& seen = *engine;
    nf::FrameLoop loop(b, std::move(engine), {});
    const std::int64_t n = loop.frame_numel();
    std::vector<float> e(static_cast<std::size_t>(n), 0.5f);
    loop.feed_noise(e.data(), n);
    std::vector<float> frame(static_cast<std::size_t>(n), -0.2f);
    loop.push_frame(frame.data(), 3);
    CHECK_EQ(loop.pos(), std::int64_t(1));
    const float keep = 1.0f - 0.25f;
    const float want = keep * -0.2f + 0.25f * 0.5f;
    CHECK(seen.last_x[0] == want && seen.last_x[std::size_t(n - 1)] == want);
    CHECK(seen.last_t == 0.25f);
    CHECK_EQ(seen.last_action, std::int64_t(3));
    CHECK(seen.last_ages[0] == 0 && seen.last_ages[1] == 0 && seen.last_ages[2] == 0);
    // a second push sees the first at age 1
    loop.feed_noise(e.data(), n);
    loop.push_frame(frame.data(), 0);
    CHECK(seen.last_ages[0] == 1 && seen.last_ages[1] == 0 && seen.last_ages[2] == 0);
}

NF_TEST(frame_loop_ring_positions) {
    const nf::Bundle b = tiny_bundle();
    auto loop = make_loop(b, {});
    const auto frames = rollout(*loop, b, {0, 1, 2, 0, 1});  // 2 context + 5 generated = 7 pushes, 3 slots
    CHECK_EQ(loop->pos(), std::int64_t(7));
    CHECK(loop->slot_pos() == std::vector<std::int64_t>({6, 4, 5}));
    CHECK(frames.size() == 5);
    double spread = 0;
    for (float v : frames.back()) spread += std::abs(v);
    CHECK(spread > 1.0);  // frames carry signal
}

NF_TEST(frame_loop_speculation_bit_identical) {
  for (bool x0 : {false, true}) {
    const nf::Bundle b = tiny_bundle(3, 0.1, x0);
    const std::vector<std::int64_t> actions = {0, 0, 0, 1, 1, 2, 0, 0, 2, 2, 2, 1, 0, 1, 1};
    nf::FrameLoopParams plain_p;
    plain_p.seed = 7;
    nf::FrameLoopParams spec_p = plain_p;
    spec_p.speculate = true;
    auto plain = make_loop(b, plain_p);
    auto spec = make_loop(b, spec_p);
    const auto want = rollout(*plain, b, actions, 9);
    const auto got = rollout(*spec, b, actions, 9);
    bool same = true;
    for (std::size_t i = 0; i < want.size(); ++i)
        same = same && std::memcmp(want[i].data(), got[i].data(), want[i].size() * sizeof(float)) == 0;
    CHECK(same);
    const nf::StatsSummary s = spec->stats();
    CHECK(s.n_speculation_hits > 0);
    CHECK(s.n_speculation_misses > 0);
    // one speculation per step but the last, minus the one discarded by the reset at step 9
    CHECK_EQ(s.n_speculation_hits + s.n_speculation_misses, std::int64_t(actions.size() - 2));
    CHECK(spec->speculation_pending());
    CHECK_EQ(spec->pos(), plain->pos() + 1);  // the pending frame sits in the ring
    // after a miss the next step (not a hit) must still match: one more step each
    std::vector<float> a(std::size_t(plain->frame_numel())), c(a.size());
    plain->step(2, a.data());
    spec->step(2, c.data());
    CHECK(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)) == 0);
  }
}

NF_TEST(frame_loop_speculation_with_fed_noise) {
    // Fed noise covering exactly the rollout: the last speculation is skipped (no noise for it), frames
    // still equal the plain loop's.
    const nf::Bundle b = tiny_bundle(2, 0.1);
    const std::vector<std::int64_t> actions = {1, 1, 2, 2, 0};
    std::vector<float> noise(std::size_t((2 + 2 * actions.size()) * 48));
    for (std::size_t i = 0; i < noise.size(); ++i) noise[i] = float(int(i * 7919 % 200) - 100) / 50.0f;
    std::vector<std::vector<float>> results;
    for (bool speculate : {false, true}) {
        nf::FrameLoopParams p;
        p.speculate = speculate;
        auto loop = make_loop(b, p);
        loop->feed_noise(noise.data(), std::int64_t(noise.size()));
        const auto frames = rollout(*loop, b, actions);
        std::vector<float> flat;
        for (const auto& f : frames) flat.insert(flat.end(), f.begin(), f.end());
        results.push_back(flat);
        if (speculate) {
            const auto s = loop->stats();
            CHECK_EQ(s.n_speculation_skipped, std::int64_t(1));
            CHECK_EQ(s.n_speculation_hits, std::int64_t(2));
            CHECK_EQ(s.n_speculation_misses, std::int64_t(2));
        }
    }
    CHECK(results[0] == results[1]);
}

NF_TEST(frame_loop_no_allocation_per_frame) {
    const nf::Bundle b = tiny_bundle(2, 0.1);
    for (bool speculate : {false, true}) {
        nf::FrameLoopParams p;
        p.speculate = speculate;
        auto loop = make_loop(b, p);
        const std::vector<float> ctx = context(b, 2);
        const std::vector<std::int64_t> ctx_actions = {3, 1};
        std::vector<float> out(std::size_t(loop->frame_numel()));
        loop->reset(ctx.data(), 2, ctx_actions.data());
        for (int i = 0; i < 3; ++i) loop->step(i % 3, out.data());  // warm-up
        const long new_before = g_n_new.load();
        const std::int64_t tensors_before = nf::HostTensor::n_allocated();
        for (int i = 0; i < 50; ++i) loop->step((i / 3) % 3, out.data());  // hits and misses
        loop->reset(ctx.data(), 2, ctx_actions.data());
        const long n_new = g_n_new.load() - new_before;
        CHECK_EQ(n_new, 0L);
        CHECK_EQ(nf::HostTensor::n_allocated() - tensors_before, std::int64_t(0));
        CHECK_EQ(loop->stats().n_reallocations, std::int64_t(0));
    }
}

NF_TEST(frame_loop_disa_and_heun_eval_counts) {
    const nf::Bundle b = tiny_bundle(2, 0.1);
    nf::FrameLoopParams p;
    p.sampler = nf::SamplerKind::Heun;
    p.disa.enabled = true;
    p.disa.n_max = 4;
    p.disa.n_min = 1;
    p.disa.n_anneal_frames = 3;
    auto loop = make_loop(b, p);
    rollout(*loop, b, {0, 0, 0, 0, 0});
    // pushes: 2 context + 5 frames; denoising: steps 4, 3, 2, 1, 1 -> heun evals 7, 5, 3, 1, 1
    CHECK_EQ(loop->stats().n_engine_runs, std::int64_t(7 + 17));
}

NF_TEST(frame_loop_errors) {
    const nf::Bundle b = tiny_bundle();
    auto loop = make_loop(b, {});
    std::vector<float> out(std::size_t(loop->frame_numel()));
    CHECK_THROWS(nf::InvalidArgument, loop->step(3, out.data()), "frame_loop: action 3 out of range (expected 0..2)");
    CHECK_THROWS(nf::InvalidArgument, loop->step(-1, out.data()), "frame_loop: action -1 out of range (expected 0..2)");
    const std::vector<float> ctx = context(b, 1);
    const std::int64_t bad = 4;
    CHECK_THROWS(nf::InvalidArgument, loop->reset(ctx.data(), 1, &bad), "frame_loop: context action 4 out of range (expected 0..3)");
    nf::FrameLoopParams p;
    p.n_steps = -1;
    CHECK_THROWS(nf::InvalidArgument, make_loop(b, p), "frame_loop: n_steps must be non-negative (got -1)");
}
