// See tm_host_log.h. Defines the DebugLog that TFLM's MicroPrintf calls.
#include "tm_host_log.h"

#include <stddef.h>

namespace {
char g_log[512];
size_t g_used = 0;
bool g_line_ended = false;  // a "; " goes in before the next line's first character

void Put(char c) {
  if (g_used + 1 < sizeof g_log) g_log[g_used++] = c;
}
}  // namespace

extern "C" void DebugLog(const char* s) {
  if (s == nullptr) return;
  for (; *s != '\0'; ++s) {
    if (*s == '\n' || *s == '\r') {
      g_line_ended = g_used != 0;
      continue;
    }
    if (g_line_ended) {
      Put(';');
      Put(' ');
      g_line_ended = false;
    }
    Put(*s);
  }
  g_log[g_used] = '\0';
}

extern "C" const char* tm_host_last_log(void) {
  g_log[g_used] = '\0';
  return g_log;
}

extern "C" void tm_host_clear_log(void) {
  g_used = 0;
  g_line_ended = false;
  g_log[0] = '\0';
}
