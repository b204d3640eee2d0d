// Interrupting long calls (Ctrl-C from Python).
//
// The bindings release the GIL around calls that may take long (opening a bundle hashes every file it lists),
// so Python's SIGINT handler cannot run until they return. Such loops call check_interrupt() between chunks of
// work; the bindings install a hook that takes the GIL, runs pending signal handlers and throws the Python
// exception they raised (KeyboardInterrupt, or SystemExit from a SIGTERM handler), which unwinds the core and
// reaches the caller unchanged. Without a hook (C++ callers, tests) check_interrupt() does nothing.
#pragma once

namespace nf {

// Throws to abort the current call; returns normally when nothing is pending.
using InterruptHook = void (*)();

void set_interrupt_hook(InterruptHook hook);
void check_interrupt();

}  // namespace nf
