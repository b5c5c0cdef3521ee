// Stand-in declarations of the Arduino core API used by firmware/src/main.cpp.
#pragma once
#include <stddef.h>
#include <stdint.h>
#define HIGH 0x1
#define LOW 0x0
#define OUTPUT 0x1
#define LED_BUILTIN 13
void pinMode(int pin, int mode);
void digitalWrite(int pin, int value);
unsigned long micros();
unsigned long millis();
class SerialPort {
 public:
  void begin(unsigned long baud);
  int available();
  size_t readBytes(char* buffer, size_t length);
  size_t write(const uint8_t* buffer, size_t size);
  explicit operator bool();
};
extern SerialPort Serial;
