//===- Status.h - Status helpers shared by the runtime ----------*- C++ -*-===//
//
// Our Abseil (Debian 20220623) has no status macros; these are the project's.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_RUNTIME_BASE_STATUS_H
#define CROSSPOOL_RUNTIME_BASE_STATUS_H

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CP_STATUS_CONCAT_INNER_(a, b) a##b
#define CP_STATUS_CONCAT_(a, b) CP_STATUS_CONCAT_INNER_(a, b)

/// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define CP_RETURN_IF_ERROR(expr)                                               \
  do {                                                                         \
    ::absl::Status cp_status_ = (expr);                                        \
    if (!cp_status_.ok())                                                      \
      return cp_status_;                                                       \
  } while (0)

/// `CP_ASSIGN_OR_RETURN(auto x, makeX());` binds the value or returns the
/// error of an absl::StatusOr<T>.
#define CP_ASSIGN_OR_RETURN(lhs, expr)                                         \
  CP_ASSIGN_OR_RETURN_IMPL_(CP_STATUS_CONCAT_(cp_statusor_, __LINE__), lhs,    \
                            expr)
#define CP_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                              \
  auto tmp = (expr);                                                           \
  if (!tmp.ok())                                                               \
    return std::move(tmp).status();                                            \
  lhs = std::move(tmp).value()

#endif // CROSSPOOL_RUNTIME_BASE_STATUS_H
