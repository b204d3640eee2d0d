// Ring of the frames the loop pushed (as cached: noised to the context-noise level) and the action that led
// to each: what graphs read through the context roles (graph_roles.h), "the frame k back" and "the action
// that led to it", for k = 1 (the newest) .. depth.
//
// Frame pos p lives in slot p % n_slots, n_slots = depth + spare: the last `spare` pushes can be undone by
// rewind(n) (speculation rollback), since a push only overwrote a frame that then lies more than depth back.
// Where fewer than k frames were pushed, the first frame pushed stands in for the missing ones, led by no
// action (a frame-stack model is trained on the same rule at episode starts); before any push there is no
// frame at all (frame_back returns nullptr: the loop feeds zeros). Nothing allocates after construction.
#pragma once

#include <cstdint>
#include <vector>

#include "graph_roles.h"
#include "tensor.h"

namespace nf {

class FrameHistory {
public:
    // depth >= 0 (0: nothing is kept), frame_numel > 0, spare >= 1.
    FrameHistory(std::int64_t depth, std::int64_t frame_numel, std::int64_t no_action, std::int64_t spare = 1);

    std::int64_t depth() const { return depth_; }
    std::int64_t frame_numel() const { return numel_; }
    std::int64_t pos() const { return pos_; }  // frames pushed since clear()
    std::int64_t n_rewindable() const { return n_undo_; }
    std::vector<std::int64_t> slot_pos() const;  // frame pos held by each slot, -1 = empty

    void clear();
    // Copies frame (frame_numel floats) into slot pos % n_slots, records action, then pos++.
    void push(const float* frame, std::int64_t action);
    // Undoes the last n pushes; n in 0..n_rewindable() (nf::InvalidArgument otherwise).
    void rewind(std::int64_t n);

    // k in 1..depth (nf::InvalidArgument otherwise). nullptr when nothing was pushed.
    const float* frame_back(std::int64_t k) const;
    std::int64_t action_back(std::int64_t k) const;

private:
    std::int64_t slot_back(std::int64_t k) const;  // the slot read for k back; -1 when nothing was pushed

    std::int64_t depth_, numel_, no_action_, n_slots_;
    HostTensor frames_;  // [n_slots, numel]
    std::vector<std::int64_t> actions_;
    std::vector<std::int64_t> slot_pos_;
    std::int64_t pos_ = 0;
    std::int64_t n_undo_ = 0;
    std::int64_t spare_;
};

// What a graph input of a context role reads from h now: context_frame / context_action n frames back, context_frames
// / context_actions the last n, oldest first (slot j holds the frame n - j back); zeros for frames before the first
// push. out: float32 (frames) or int64 (actions) values; n must be within h.depth().
void read_context(const FrameHistory& h, Role role, std::int64_t n, void* out);

// The frame as the loops push it into the context, noised to the context level: out = (1 - cn) frame + cn noise, in
// this rounding order (FrameLoop's pushes and the device loops' resets must agree bit for bit); noise null: none.
void noised_frame(const float* frame, const float* noise, float cn, std::int64_t numel, float* out);

}  // namespace nf
