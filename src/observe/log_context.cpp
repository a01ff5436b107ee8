#include "observe/log_context.h"

namespace keel::observe {

namespace {
thread_local const LogContext* t_current = nullptr;
}

const LogContext* current_log_context() { return t_current; }

LogScope::LogScope(const LogContext* ctx) : prev_(t_current) { t_current = ctx; }
LogScope::~LogScope() { t_current = prev_; }

}  // namespace keel::observe
