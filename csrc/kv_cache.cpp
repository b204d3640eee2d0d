#include "kv_cache.h"

#include <cstring>
#include <string>

#include "common.h"

namespace nf {

namespace {

KvCacheLayout checked(const KvCacheLayout& l) {
    const std::pair<const char*, std::int64_t> dims[] = {
        {"n_layers", l.n_layers}, {"n_heads", l.n_heads}, {"n_slots", l.n_slots},
        {"window", l.window}, {"tokens_per_frame", l.tokens_per_frame}, {"head_dim", l.head_dim}};
    for (const auto& d : dims)
        NF_CHECK_ARG(d.second > 0, std::string("kv_cache: ") + d.first + " must be positive (got " +
                                       std::to_string(d.second) + ")");
    NF_CHECK_ARG(l.n_slots > l.window, "kv_cache: n_slots " + std::to_string(l.n_slots) +
                                           " must exceed window (expected >= " + std::to_string(l.window + 1) + ")");
    return l;
}

}  // namespace

KvCache::KvCache(const KvCacheLayout& layout, bool hold_kv)
    : layout_(checked(layout)),
      k_(hold_kv ? HostTensor(DType::F32, layout_.cache_shape()) : HostTensor()),
      v_(hold_kv ? HostTensor(DType::F32, layout_.cache_shape()) : HostTensor()),
      slot_pos_(std::size_t(layout_.n_slots), -1),
      undo_prev_(std::size_t(layout_.n_slots - layout_.window), -1) {}

std::int64_t KvCache::slot_of(std::int64_t pos) const {
    NF_CHECK_ARG(pos >= 0, "kv_cache: pos must be non-negative (got " + std::to_string(pos) + ")");
    return pos % layout_.n_slots;
}

void KvCache::clear() {
    for (auto& p : slot_pos_) p = -1;
    pos_ = 0;
    undo_head_ = 0;
    n_undo_ = 0;
}

void KvCache::ages(std::int64_t* out) const {
    for (std::size_t s = 0; s < slot_pos_.size(); ++s) out[s] = slot_pos_[s] >= 0 ? pos_ - slot_pos_[s] : 0;
}

void KvCache::push(const float* k_new, const float* v_new) {
    NF_CHECK(k_.numel() > 0, "kv_cache: push on a ring that holds no K/V (advance() records a slot written elsewhere)");
    const std::int64_t slot = pos_ % layout_.n_slots;
    const std::int64_t per_frame = layout_.tokens_per_frame * layout_.head_dim;
    const std::int64_t n_lh = layout_.n_layers * layout_.n_heads;  // batch is 1
    float* k = k_.data<float>();
    float* v = v_.data<float>();
    for (std::int64_t lh = 0; lh < n_lh; ++lh) {
        const std::int64_t dst = (lh * layout_.n_slots + slot) * per_frame;
        std::memcpy(k + dst, k_new + lh * per_frame, sizeof(float) * std::size_t(per_frame));
        std::memcpy(v + dst, v_new + lh * per_frame, sizeof(float) * std::size_t(per_frame));
    }
    advance();
}

void KvCache::advance() {
    const std::int64_t slot = pos_ % layout_.n_slots;
    const std::int64_t capacity = std::int64_t(undo_prev_.size());
    undo_prev_[std::size_t(undo_head_)] = slot_pos_[std::size_t(slot)];
    undo_head_ = (undo_head_ + 1) % capacity;
    if (n_undo_ < capacity) ++n_undo_;
    slot_pos_[std::size_t(slot)] = pos_;
    ++pos_;
}

void KvCache::rewind(std::int64_t n) {
    NF_CHECK_ARG(n >= 0 && n <= n_undo_, "kv_cache: cannot rewind " + std::to_string(n) + " frames (expected 0.." +
                                             std::to_string(n_undo_) + ": pos " + std::to_string(pos_) +
                                             ", n_slots " + std::to_string(layout_.n_slots) + ", window " +
                                             std::to_string(layout_.window) + ")");
    const std::int64_t capacity = std::int64_t(undo_prev_.size());
    for (std::int64_t i = 0; i < n; ++i) {
        --pos_;
        undo_head_ = (undo_head_ - 1 + capacity) % capacity;
        slot_pos_[std::size_t(pos_ % layout_.n_slots)] = undo_prev_[std::size_t(undo_head_)];
        --n_undo_;
    }
}

}  // namespace nf
