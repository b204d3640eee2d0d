// Pins binding by role with a graph of the frame-stack signature (context_frames, context_actions,
// context_noise_level; no K/V cache), through a fake engine that records what it was fed: after a reset with
// 2 frames into a context of 3 the oldest slot repeats the first frame, led by no action; each generated
// frame enters the context (noised to the context-noise level); a push runs no engine; a speculation miss
// rewinds the history so the recomputed frame sees the same context; the bundle parses with no kv_cache.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bundle.h"
#include "common.h"
#include "engine.h"
#include "frame_loop.h"
#include "nf_test.h"
#include "tiny_manifest.h"

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
    return s;
}

// denoised = 0.25 * (mean of the context frames) + 0.001 * (sum of context actions) (x is ignored), and
// records the context and actions of every run.
class FakeStackEngine final : public nf::Engine {
public:
    explicit FakeStackEngine(const nf::Bundle& b)
        : Engine(b.step.inputs, b.step.outputs, "fake-stack"), numel_(b.frame.channels * b.frame.height * b.frame.width) {}
    long n_runs = 0;
    std::vector<float> last_ctx_first;  // element 0 of each context frame, oldest first
    std::vector<std::int64_t> last_actions;
    float last_ctx_t = -1;

private:
    void bind(const nf::Bindings& b) override { b_ = b; }
    void execute() override {
        ++n_runs;
        auto in = [&](const char* name) -> nf::HostTensor& {
            for (std::size_t i = 0; i < inputs().size(); ++i)
                if (inputs()[i].name == name) return *b_.inputs[i];
            throw nf::RuntimeError("fake: no input");
        };
        const nf::HostTensor& ctx = in("ctx");
        const std::int64_t k = ctx.shape()[1];
        const float* c = ctx.data<float>();
        const auto* a = in("ctx_actions").data<std::int64_t>();
        last_ctx_first.assign(std::size_t(k), 0.f);
        last_actions.assign(a, a + k);
        last_ctx_t = in("ctx_t").data<float>()[0];
        std::int64_t action_sum = 0;
        for (std::int64_t j = 0; j < k; ++j) {
            last_ctx_first[std::size_t(j)] = c[j * numel_];
            action_sum += a[j];
        }
        float* out = b_.outputs[0]->data<float>();
        for (std::int64_t i = 0; i < numel_; ++i) {
            float m = 0;
            for (std::int64_t j = 0; j < k; ++j) m += c[j * numel_ + i];
            out[i] = 0.25f * m / float(k) + 0.001f * float(action_sum);
        }
    }
    std::int64_t numel_;
    nf::Bindings b_;
};

nf::Bundle stack_bundle() {
    nf_test::TinyManifest m;
    m.frame_stack = true;
    m.x0 = true;
    m.n_steps = 1;
    m.context_noise = 0.0;
    return nf::Bundle::parse(m.text(), "/nonexistent");
}

}  // namespace

NF_TEST(frame_stack_manifest_parses_by_role) {
    const nf::Bundle b = stack_bundle();
    CHECK(!b.uses_cache());
    CHECK_EQ(b.history_depth(), std::int64_t(3));
    CHECK(b.kv_cache.n_slots == 0);
    CHECK(b.step.role_of_input("ctx")->role == nf::Role::ContextFrames);
    CHECK(b.step.role_of_input("x")->role == nf::Role::NoisyFrame);  // legacy name
    nf_test::TinyManifest bad;
    bad.frame_stack = true;
    bad.x0 = true;
    CHECK_THROWS(nf::InvalidArgument, nf::Bundle::parse(replace_all(bad.text(), "\"context_actions\"", "\"context_frames\""), "/b"),
                 "bundle: step graph input 'ctx_actions': role context_frames listed twice");
}

NF_TEST(frame_stack_loop_feeds_the_history) {
    const nf::Bundle b = stack_bundle();
    auto engine = std::make_unique<FakeStackEngine>(b);
    FakeStackEngine* fake = engine.get();
    nf::FrameLoopParams p;
    p.seed = 1;
    nf::FrameLoop loop(b, std::move(engine), p);
    const std::int64_t n = loop.frame_numel();
    std::vector<float> ctx(std::size_t(2 * n));
    std::fill(ctx.begin(), ctx.begin() + n, 0.5f);
    std::fill(ctx.begin() + n, ctx.end(), -0.5f);
    const std::vector<std::int64_t> ctx_actions = {3, 1};  // 3 = no_action for the first frame
    loop.reset(ctx.data(), 2, ctx_actions.data());
    CHECK_EQ(fake->n_runs, 0L);  // pushing a frame runs nothing: there is no cache to write
    std::vector<float> out(static_cast<std::size_t>(n));
    loop.step(2, out.data());
    CHECK_EQ(fake->n_runs, 1L);
    CHECK(fake->last_ctx_first == std::vector<float>({0.5f, 0.5f, -0.5f}));  // the first frame stands in
    CHECK(fake->last_actions == std::vector<std::int64_t>({3, 3, 1}));       // led by no action
    CHECK(fake->last_ctx_t == 0.0f);
    const float first = 0.25f * (0.5f + 0.5f - 0.5f) / 3.0f + 0.001f * 7.0f;  // x0 sampler, 1 step: the prediction
    CHECK(std::fabs(out[0] - first) < 1e-6f);
    loop.step(0, out.data());
    CHECK(fake->last_ctx_first == std::vector<float>({0.5f, -0.5f, first}));
    CHECK(fake->last_actions == std::vector<std::int64_t>({3, 1, 2}));
    CHECK(loop.pos() == 4);
    CHECK(loop.slot_pos() == std::vector<std::int64_t>({0, 1, 2, 3}));
}

NF_TEST(frame_stack_speculation_miss_rewinds_the_history) {
    const nf::Bundle b = stack_bundle();
    auto run = [&](bool speculate) {
        nf::FrameLoopParams p;
        p.seed = 5;
        p.speculate = speculate;
        nf::FrameLoop loop(b, std::make_unique<FakeStackEngine>(b), p);
        const std::int64_t n = loop.frame_numel();
        std::vector<float> ctx(std::size_t(2 * n), 0.25f);
        const std::vector<std::int64_t> ctx_actions = {3, 0};
        loop.reset(ctx.data(), 2, ctx_actions.data());
        std::vector<float> frames;
        std::vector<float> out(static_cast<std::size_t>(n));
        for (std::int64_t a : {0, 0, 1, 2, 2, 0}) {
            loop.step(a, out.data());
            frames.insert(frames.end(), out.begin(), out.end());
        }
        return frames;
    };
    CHECK(run(false) == run(true));
}
