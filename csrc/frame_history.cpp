#include "frame_history.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "common.h"

namespace nf {

FrameHistory::FrameHistory(std::int64_t depth, std::int64_t frame_numel, std::int64_t no_action, std::int64_t spare)
    : depth_(depth), numel_(frame_numel), no_action_(no_action), n_slots_(depth + spare), spare_(spare) {
    NF_CHECK_ARG(depth >= 0 && frame_numel > 0 && spare >= 1,
                 "frame_history: need depth >= 0, frame_numel > 0, spare >= 1 (got " + std::to_string(depth) + ", " +
                     std::to_string(frame_numel) + ", " + std::to_string(spare) + ")");
    frames_ = HostTensor(DType::F32, {n_slots_, numel_});
    actions_.assign(std::size_t(n_slots_), no_action_);
    slot_pos_.assign(std::size_t(n_slots_), -1);
}

std::vector<std::int64_t> FrameHistory::slot_pos() const { return slot_pos_; }

void FrameHistory::clear() {
    std::fill(slot_pos_.begin(), slot_pos_.end(), -1);
    pos_ = 0;
    n_undo_ = 0;
}

void FrameHistory::push(const float* frame, std::int64_t action) {
    const std::int64_t slot = pos_ % n_slots_;
    std::memcpy(frames_.data<float>() + slot * numel_, frame, sizeof(float) * std::size_t(numel_));
    actions_[std::size_t(slot)] = action;
    slot_pos_[std::size_t(slot)] = pos_;
    ++pos_;
    n_undo_ = std::min(n_undo_ + 1, spare_);
}

void FrameHistory::rewind(std::int64_t n) {
    NF_CHECK_ARG(n >= 0 && n <= n_undo_, "frame_history: cannot rewind " + std::to_string(n) + " frames (expected 0.." +
                                             std::to_string(n_undo_) + ")");
    for (std::int64_t i = 0; i < n; ++i) {
        --pos_;
        // the undone push overwrote a frame more than depth back, never read again: the slot holds nothing
        slot_pos_[std::size_t(pos_ % n_slots_)] = -1;
        --n_undo_;
    }
}

std::int64_t FrameHistory::slot_back(std::int64_t k) const {
    NF_CHECK_ARG(k >= 1 && k <= depth_, "frame_history: k " + std::to_string(k) + " out of range (expected 1.." +
                                            std::to_string(depth_) + ")");
    if (pos_ == 0) return -1;
    return std::max<std::int64_t>(pos_ - k, 0) % n_slots_;
}

const float* FrameHistory::frame_back(std::int64_t k) const {
    const std::int64_t slot = slot_back(k);
    return slot < 0 ? nullptr : frames_.data<float>() + slot * numel_;
}

std::int64_t FrameHistory::action_back(std::int64_t k) const {
    const std::int64_t slot = slot_back(k);
    if (slot < 0 || pos_ - k < 0) return no_action_;
    return actions_[std::size_t(slot)];
}

void read_context(const FrameHistory& h, Role role, std::int64_t n, void* out) {
    const std::int64_t numel = h.frame_numel();
    auto copy_frame = [&](float* dst, std::int64_t back) {
        const float* src = h.frame_back(back);
        if (src) std::memcpy(dst, src, sizeof(float) * std::size_t(numel));
        else std::memset(dst, 0, sizeof(float) * std::size_t(numel));
    };
    switch (role) {
        case Role::ContextFrame: copy_frame(static_cast<float*>(out), n); break;
        case Role::ContextFrames:
            for (std::int64_t j = 0; j < n; ++j) copy_frame(static_cast<float*>(out) + j * numel, n - j);
            break;
        case Role::ContextAction: static_cast<std::int64_t*>(out)[0] = h.action_back(n); break;
        case Role::ContextActions:
            for (std::int64_t j = 0; j < n; ++j) static_cast<std::int64_t*>(out)[j] = h.action_back(n - j);
            break;
        default: throw InvalidArgument(std::string("frame_history: ") + role_name(role) + " is not a context role");
    }
}

void noised_frame(const float* frame, const float* noise, float cn, std::int64_t numel, float* out) {
    const float keep = 1.0f - cn;
    if (noise == nullptr) {
        for (std::int64_t i = 0; i < numel; ++i) out[i] = keep * frame[i] + 0.0f;  // + 0: as cn * 0 would (-0 -> +0)
        return;
    }
    for (std::int64_t i = 0; i < numel; ++i) {
        const float a = keep * frame[i];
        const float b = cn * noise[i];
        out[i] = a + b;
    }
}

}  // namespace nf
