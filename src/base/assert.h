// Assertions that stay on in release builds. A broken invariant stops the process: continuing
// would risk serving or storing wrong data. Operating errors (bad input, a dead peer) are never
// asserted; they are returned as Result errors.
#pragma once

namespace keel::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const char* msg);
}

#define KEEL_ASSERT(cond)                                                    \
  do {                                                                       \
    if (__builtin_expect(!(cond), 0))                                        \
      ::keel::detail::assert_fail(#cond, __FILE__, __LINE__, nullptr);       \
  } while (0)

#define KEEL_ASSERT_MSG(cond, msg)                                           \
  do {                                                                       \
    if (__builtin_expect(!(cond), 0))                                        \
      ::keel::detail::assert_fail(#cond, __FILE__, __LINE__, (msg));         \
  } while (0)

#define KEEL_UNREACHABLE() ::keel::detail::assert_fail("unreachable", __FILE__, __LINE__, nullptr)
