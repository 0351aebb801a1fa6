// EDGERT_SKIP: a test case that cannot run here (not root, no tmpfs mount, no chattr +i) reports SKIPPED, never passed.
#pragma once

namespace edgert::testing {

/// The exit code of a test binary whose run skipped a case and failed none; ctest
/// entries of root-only cases declare it as SKIP_RETURN_CODE (tests/CMakeLists.txt,
/// edgert_add_test's ROOT_CASES), so ctest prints them as "Skipped". Catch2 2.x (Debian
/// bookworm ships 2.13) has no SKIP() of its own.
inline constexpr int kSkipExitCode = 77;

/// Records that the running case was skipped (defined in catch_main.cpp, which turns a
/// run without failures into kSkipExitCode).
void mark_skipped() noexcept;

}  // namespace edgert::testing

/// Ends the current test case as skipped, saying why. Tag the case `[root][<tag>]` and
/// list <tag> in its binary's ROOT_CASES, so it runs as its own ctest entry; a skip in a
/// run of other cases makes the whole binary exit 77, which an ordinary entry counts as
/// a failure (a forgotten registration shows).
#define EDGERT_SKIP(why)                   \
  do {                                     \
    WARN("SKIPPED: " << why);              \
    ::edgert::testing::mark_skipped();     \
    return;                                \
  } while (false)
