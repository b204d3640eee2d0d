// An AR image bundle: a directory with manifest.json ("format": "nextframe.ar_bundle") and the graphs of a
// masked-autoregressive image model (models/mar.py), written by nextframe.export.ar_bundle:
//   backbone  tokens [B, L, D] f32, unknown [B, L] f32 (1 = masked), label [B] i64  ->  z [B, L, C]
//   head      x [N, D], t [N], z [N, C]  ->  velocity [N, D]       (one ODE step of the per-token diffusion head)
//   dd        state [B, L, D], unknown [B, L] (1 = the slot holds noise), label [B]  ->  tokens [B, L, D]
//             (optional: the Distilled Decoding student, one network call from noise to image)
// Batch dims are -1 (dynamic) in the manifest. The sampler section holds the AR step count and the named head
// schedules (ar_schedule.h), each with its step list, which open() recomputes from kind/t_hi/t_lo/split and refuses
// when they differ. Files are checked like every bundle's (size, sha256; bundle.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ar_schedule.h"
#include "bundle.h"
#include "json.h"

namespace nf {

struct ArBundle {
    static constexpr std::int64_t kFormatVersion = 1;

    static ArBundle open(const std::string& dir);
    static ArBundle parse(const std::string& manifest_text, const std::string& dir);
    std::vector<char> read_verified(const std::string& relative) const { return read_listed_file(dir, files, relative); }

    // The class index of a game name (case-insensitive); nf::InvalidArgument naming the classes otherwise.
    std::int64_t class_index(const std::string& name) const;
    // A named schedule of the manifest; nf::InvalidArgument naming the known ones otherwise.
    const HeadSchedule& schedule(const std::string& name) const;
    bool has_dd() const { return !dd.file.empty(); }

    std::string dir;
    Json manifest;
    std::vector<std::string> classes;
    std::int64_t height = 0, width = 0, channels = 0, patch = 0;
    std::int64_t n_tokens = 0, token_dim = 0, cond_dim = 0;
    double token_mean = 0.0, token_std = 1.0;
    std::int64_t n_ar_steps = 0;
    std::string default_schedule;
    std::vector<std::pair<std::string, HeadSchedule>> schedules;
    GraphInfo backbone, head, dd;  // dd.file empty: no student
    std::vector<std::int64_t> dd_order;    // the token order the student was distilled with (a permutation of L)
    std::int64_t dd_two_step_revealed = 0;  // tokens the second call keeps from the first (the trajectory point)
    std::vector<FileEntry> files;
};

}  // namespace nf
