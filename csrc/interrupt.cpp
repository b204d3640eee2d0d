#include "interrupt.h"

#include <atomic>

namespace nf {

namespace {
std::atomic<InterruptHook> g_hook{nullptr};
}  // namespace

void set_interrupt_hook(InterruptHook hook) { g_hook.store(hook); }

void check_interrupt() {
    if (InterruptHook hook = g_hook.load()) hook();
}

}  // namespace nf
