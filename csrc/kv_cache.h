// Ring of frame slots holding per-layer K/V for the step graph: cache_k / cache_v [L, 1, heads, S, N, hd].
//
// Frame pos p lives in slot p % S. slot_pos[s] is the position held by slot s (-1 = empty). For the frame
// being computed at pos, the age of slot s is pos - slot_pos[s] (0 when empty); the graph attends only to
// 1 <= age <= window. With S = window + spare slots, the last `spare` pushes can be undone by rewind(n):
// a push overwrote a frame that, after the rewind, lies more than `window` frames back, so nothing the
// recomputation reads is lost. Nothing moves in memory: push copies one frame's K/V into its slot.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor.h"

namespace nf {

struct KvCacheLayout {
    std::int64_t n_layers = 0;
    std::int64_t n_heads = 0;
    std::int64_t n_slots = 0;
    std::int64_t window = 0;
    std::int64_t tokens_per_frame = 0;
    std::int64_t head_dim = 0;

    Shape cache_shape() const { return {n_layers, 1, n_heads, n_slots, tokens_per_frame, head_dim}; }
    Shape frame_kv_shape() const { return {n_layers, 1, n_heads, tokens_per_frame, head_dim}; }
};

class KvCache {
public:
    // Throws nf::InvalidArgument unless every dim is positive and n_slots > window. hold_kv false: the slots'
    // bookkeeping only, for a ring whose memory lives elsewhere (a device loop's; it writes each slot itself and
    // calls advance()).
    explicit KvCache(const KvCacheLayout& layout, bool hold_kv = true);

    const KvCacheLayout& layout() const { return layout_; }
    // Logical position of the next frame = frames pushed since clear().
    std::int64_t pos() const { return pos_; }
    std::int64_t slot_of(std::int64_t pos) const;
    const std::vector<std::int64_t>& slot_pos() const { return slot_pos_; }
    // How many pushes rewind() can undo now: min(pushes since clear, n_slots - window).
    std::int64_t n_rewindable() const { return n_undo_; }

    // Empties every slot and the undo log; K/V memory is left as is (empty slots are never attended).
    void clear();
    // ages[s] for the frame at pos(); out holds n_slots int64 values.
    void ages(std::int64_t* out) const;
    // Copies one frame's K/V, each [L, 1, heads, N, hd], into slot pos() % n_slots, then advance().
    void push(const float* k_new, const float* v_new);
    // Records that slot pos() % n_slots now holds the frame at pos(), then pos()++.
    void advance();
    // Undoes the last n pushes (pos -= n, slot_pos restored). n must be in 0..n_rewindable()
    // (nf::InvalidArgument otherwise).
    void rewind(std::int64_t n);

    HostTensor& k() { return k_; }
    HostTensor& v() { return v_; }
    const HostTensor& k() const { return k_; }
    const HostTensor& v() const { return v_; }

private:
    KvCacheLayout layout_;
    HostTensor k_, v_;
    std::vector<std::int64_t> slot_pos_;
    std::int64_t pos_ = 0;
    // Undo log ring: undo_prev_[i] = slot_pos value a push replaced; the newest entry is at undo_head_-1.
    std::vector<std::int64_t> undo_prev_;
    std::int64_t undo_head_ = 0;
    std::int64_t n_undo_ = 0;
};

}  // namespace nf
