// The firmware's TFLM adapter (firmware/src/tflm_engine.cpp) behind the host shim's invoke
// callback, so the virtual board runs the adapter and the board's own TFLM library, compiled
// for the host, on the generated model: the same code path as the board from Begin() on.
#include <string.h>

#include "model_settings.h"
#include "tflm_engine.h"
#include "tm_host.h"

extern "C" {

/* tflm_engine::Begin(): 0 = ready, else the start-up status code INFO reports. */
uint8_t tm_engine_begin(void) { return static_cast<uint8_t>(tflm_engine::Begin()); }

const char* tm_engine_message(void) { return tflm_engine::status_message(); }

uint32_t tm_engine_arena_used(void) { return static_cast<uint32_t>(tflm_engine::arena_used()); }

/* PROFILE then times each op of the adapter's interpreter, as on the board. */
void tm_engine_attach_profiler(void) {
  static tflm_engine::CoreEngine engine;
  tm_host_set_profiling_engine(&engine);
}

/* A tm_invoke_fn: the core's request buffer into the interpreter's input tensor, Invoke(),
 * the output tensor back. Sizes are the generated settings', checked by Begin(). */
int32_t tm_engine_invoke(void* user, const int8_t* input, uint32_t input_len, int8_t* output,
                         uint32_t output_len) {
  (void)user;
  int8_t* in = tflm_engine::input();
  if (in == nullptr || input_len != model::kInputBytes || output_len != model::kOutputBytes) return 1;
  memcpy(in, input, input_len);
  if (!tflm_engine::Invoke()) return 1;
  memcpy(output, tflm_engine::output(), output_len);
  return 0;
}

}  // extern "C"
