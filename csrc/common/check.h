// NTE_CHECK: argument / invariant checks that raise a C++ exception with a message.
//
// Only for code that runs on the calling thread (the bindings, setup code).
// Worker threads never throw: they report through status structs instead
// (see tokenizer/kmer.h), because an exception escaping a std::thread
// terminates the process.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ntengine {

/// Thrown by NTE_CHECK; pybind11 turns it into a Python RuntimeError.
class CheckError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// Folds any number of streamable arguments into one string (empty if none).
template <typename... Args>
std::string cat_message(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void check_failed(const char* file, int line, const char* cond,
                                      const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": check `" << cond << "` failed";
  if (!msg.empty()) os << ": " << msg;
  throw CheckError(os.str());
}

}  // namespace detail
}  // namespace ntengine

/// NTE_CHECK(cond, "message ", value, ...): throws ntengine::CheckError naming
/// the file, line, condition and the streamed message when `cond` is false.
#define NTE_CHECK(cond, ...)                                                       \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      ::ntengine::detail::check_failed(__FILE__, __LINE__, #cond,                  \
                                       ::ntengine::detail::cat_message(__VA_ARGS__)); \
    }                                                                              \
  } while (0)
