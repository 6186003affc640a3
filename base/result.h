// Result<T>: the return type of anything that can fail for a host or
// configuration reason (a file is missing, mmap failed). Guest-visible events
// are never reported this way; they are exit records and exceptions raised at
// instruction boundaries. Internal invariants are assertions.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace bt86 {

struct Error {
  std::string message;  // one line, names the problem; shown to the user as is
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : m_v(std::move(value)) {}
  Result(Error error) : m_v(std::move(error)) {}

  bool ok() const { return std::holds_alternative<T>(m_v); }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<T>(m_v); }
  const T& value() const& { return std::get<T>(m_v); }
  T&& value() && { return std::get<T>(std::move(m_v)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<Error>(m_v); }

 private:
  std::variant<T, Error> m_v;
};

struct Ok {};
using Status = Result<Ok>;

inline Error make_error(std::string message) { return Error{std::move(message)}; }

}  // namespace bt86
