// The three things the portable core needs from its surroundings. The board layer
// implements them with TFLM, micros()/DWT and Serial; the host shim with callbacks.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace core {

class Engine {
 public:
  // Input tensor data and its size in bytes (nullptr / 0 when the engine is not ready).
  virtual int8_t* input() = 0;
  virtual size_t input_bytes() const = 0;
  // Runs the model on input(); false if the interpreter reports an error.
  virtual bool invoke() = 0;
  virtual const int8_t* output() const = 0;
  virtual size_t output_bytes() const = 0;
  // Arena bytes the interpreter actually allocated (reported in INFO).
  virtual size_t arena_used() const = 0;

 protected:
  ~Engine() = default;  // never deleted through this interface (no heap)
};

class Clock {
 public:
  // Microseconds, free-running, wrapping at 2^32.
  virtual uint32_t micros() = 0;
  // CPU cycle counter (wrapping); only read when has_cycles() is true.
  virtual bool has_cycles() const { return false; }
  virtual uint32_t cycles() { return 0; }

 protected:
  ~Clock() = default;
};

class Transport {
 public:
  // Copies up to `cap` received bytes into `buf` without blocking; returns how many.
  virtual size_t read(uint8_t* buf, size_t cap) = 0;
  // Sends `len` bytes (one whole frame per call).
  virtual void write(const uint8_t* data, size_t len) = 0;

 protected:
  ~Transport() = default;
};

}  // namespace core
