// Board layer for QEMU's mps2-an386 (Arm's AN386 FPGA image: a Cortex-M4 with FPU), run as
// `qemu-system-arm -M mps2-an386 -icount shift=0`.
//
// The counterpart of firmware/src/main.cpp: the same portable core, TFLM adapter, generated
// model and TFLM library objects, wired to the CMSDK APB UART0 (the transport; QEMU puts it
// on a pty) and SysTick (the clock). Everything else of the image is identical to the Nano's.
//
// Time: with -icount shift=0 QEMU retires one instruction per nanosecond of virtual time, and
// SysTick counts the 25 MHz system clock of the AN386, so one tick is 40 instructions. The
// board reports instructions where the Nano reports DWT cycles, and micros() as the time
// those instructions would take at the Nano's 64 MHz with one cycle each; the host labels
// both as what they are.
#include <stddef.h>
#include <stdint.h>

#include <new>

#include "dispatcher.h"
#include "model_device_info.h"
#include "model_settings.h"
#include "protocol.h"
#include "tflm_engine.h"
#include "version.h"

namespace {

// The host tools recognise the emulator by this name (host_tools/emulator.py BOARD_NAME).
constexpr char kBoardName[] = "emulated Cortex-M4 (QEMU)";
// The clock the reported cycles are scaled to: the Nano 33 BLE's nRF52840 runs at 64 MHz.
constexpr uint32_t kReportedHz = 64000000UL;
constexpr uint32_t kInstructionsPerMicrosecond = kReportedHz / 1000000UL;
// AN386 SYSCLK (25 MHz) ticks at 1 ns per instruction (-icount shift=0): 40 instructions.
constexpr uint32_t kInstructionsPerTick = 40;

// CMSDK APB UART (Arm CoreLink SDK technical reference manual): UART1 carries TFLM's log text.
struct CmsdkUart {
  volatile uint32_t data;
  volatile uint32_t state;  // bit 0: TX buffer full
  volatile uint32_t ctrl;   // bit 0: TX enable
  volatile uint32_t intstatus;
  volatile uint32_t bauddiv;
};
CmsdkUart* const kUart1 = reinterpret_cast<CmsdkUart*>(0x40005000u);
constexpr uint32_t kUartTxFull = 1u << 0;
constexpr uint32_t kUartTxEnable = 1u << 0;
// The smallest divider the UART accepts; QEMU ignores the baud rate otherwise.
constexpr uint32_t kUartMinBaudDiv = 16;

// SysTick and the interrupt-control register (ARMv7-M architecture reference manual B3.3).
volatile uint32_t* const kSysTickCtrl = reinterpret_cast<volatile uint32_t*>(0xE000E010u);
volatile uint32_t* const kSysTickLoad = reinterpret_cast<volatile uint32_t*>(0xE000E014u);
volatile uint32_t* const kSysTickVal = reinterpret_cast<volatile uint32_t*>(0xE000E018u);
volatile uint32_t* const kIcsr = reinterpret_cast<volatile uint32_t*>(0xE000ED04u);
constexpr uint32_t kSysTickEnable = 1u << 0;
constexpr uint32_t kSysTickInterrupt = 1u << 1;
constexpr uint32_t kSysTickCpuClock = 1u << 2;
constexpr uint32_t kSysTickMax = 0x00FFFFFFu;  // 24-bit down-counter
constexpr uint32_t kIcsrPendSysTick = 1u << 26;

volatile uint32_t g_systick_wraps = 0;

void UartBegin(CmsdkUart* uart) {
  uart->bauddiv = kUartMinBaudDiv;
  uart->ctrl = kUartTxEnable;
}

void UartWrite(CmsdkUart* uart, const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    // QEMU holds a byte here only while the pty is full; with no host on the pty it drops
    // the bytes, like the Nano's USB port with no host attached.
    while ((uart->state & kUartTxFull) != 0) {
    }
    uart->data = data[i];
  }
}

class SysTickClock final : public core::Clock {
 public:
  void Begin() {
    *kSysTickLoad = kSysTickMax;
    *kSysTickVal = 0;
    *kSysTickCtrl = kSysTickEnable | kSysTickInterrupt | kSysTickCpuClock;
  }
  uint32_t micros() override { return static_cast<uint32_t>(Instructions() / kInstructionsPerMicrosecond); }
  bool has_cycles() const override { return true; }
  // Instructions, wrapping at 2^32 like the Nano's DWT cycle counter.
  uint32_t cycles() override { return static_cast<uint32_t>(Instructions()); }

 private:
  static uint64_t Instructions() { return Ticks() * kInstructionsPerTick; }
  static uint64_t Ticks() {
    // A wrap between reading the count and the wraps is seen as a pending SysTick interrupt.
    __asm volatile("cpsid i" ::: "memory");
    uint32_t wraps = g_systick_wraps;
    uint32_t value = *kSysTickVal;
    if ((*kIcsr & kIcsrPendSysTick) != 0) {
      ++wraps;
      value = *kSysTickVal;
    }
    __asm volatile("cpsie i" ::: "memory");
    return (static_cast<uint64_t>(wraps) << 24) + (kSysTickMax - value);
  }
};

// Arm semihosting (Arm's "Semihosting for AArch32 and AArch64"): BKPT 0xAB with the
// operation in r0 and its argument (or a pointer to its argument block) in r1.
constexpr uint32_t kSysWriteC = 0x03;  // one byte, r1 points at it
constexpr uint32_t kSysWrite0 = 0x04;  // a NUL-terminated string, r1 points at it
constexpr uint32_t kSysReadC = 0x07;   // one byte, returned in r0

uint32_t Semihost(uint32_t op, const void* arg) {
  register uint32_t r0 __asm("r0") = op;
  register const void* r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

// The protocol travels on QEMU's semihosting console, which QEMU connects to a pty
// (-semihosting-config chardev=...). The CMSDK UART would carry it too, but QEMU hands the
// UART one byte per round trip between its emulation and I/O threads (measured: 28 dnn
// samples/s); the console takes up to 1 KiB per round trip into a FIFO, and the CPU then
// takes one byte per SYS_READC trap. SYS_READC sleeps the CPU until a byte is there, like
// WFI plus a UART read: the dispatcher has nothing to do until the next byte anyway.
class SemihostTransport final : public core::Transport {
 public:
  size_t read(uint8_t* buf, size_t cap) override {
    if (cap == 0) return 0;
    buf[0] = ReadByte();
    return 1;
  }
  // A COBS frame is non-zero bytes closed by one zero, the delimiter: each run of non-zero
  // bytes that a zero follows goes out as one SYS_WRITE0, each zero as one SYS_WRITEC.
  void write(const uint8_t* data, size_t len) override {
    size_t i = 0;
    while (i < len) {
      size_t end = i;
      while (end < len && data[end] != 0) ++end;
      if (end < len && end > i) {
        Semihost(kSysWrite0, data + i);
      } else {
        for (size_t k = i; k < end; ++k) Semihost(kSysWriteC, data + k);  // no zero follows
      }
      if (end < len) Semihost(kSysWriteC, data + end);  // the zero itself
      i = end + 1;
    }
  }

 private:
  // SYS_READC stores the byte just below the stack pointer and returns it in r0, but QEMU 7.2
  // (Debian 12's) returns what was there before the store, so the byte is read from memory.
  // Interrupts stay masked until then: an exception entry would push its frame over it. A
  // masked CPU still wakes, since QEMU ends the wait itself when a byte arrives.
  static uint8_t ReadByte() {
    register uint32_t r0 __asm("r0") = kSysReadC;
    register uint32_t r1 __asm("r1") = 0;
    uint32_t byte;
    __asm volatile(
        "cpsid i\n"
        "bkpt 0xab\n"
        "ldrb %1, [sp, #-1]\n"
        "cpsie i"
        : "+r"(r0), "=r"(byte)
        : "r"(r1)
        : "memory");
    return static_cast<uint8_t>(byte);
  }
};

// Frame buffers follow from the model's tensor sizes (docs/protocol.md section 1).
uint8_t g_rx[core::RxBufferBytes(model::kInputBytes)];
uint8_t g_tx[core::TxBufferBytes(model::kOutputBytes, model::kOperatorCount)];
uint8_t g_cache[core::CacheBufferBytes(model::kOutputBytes)];
core::OpTicks g_ops[model::kOperatorCount];

tflm_engine::CoreEngine g_engine;
SysTickClock g_clock;
SemihostTransport g_transport;
core::DeviceInfo g_info{};
alignas(core::Dispatcher) uint8_t g_dispatcher_storage[sizeof(core::Dispatcher)];

}  // namespace

extern "C" void SysTick_Handler() { g_systick_wraps = g_systick_wraps + 1; }

// TFLM's log sink. On the Nano the library's system_setup.cpp prints to Serial; here the
// text goes to UART1, away from the binary protocol on UART0.
extern "C" void DebugLog(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  UartWrite(kUart1, reinterpret_cast<const uint8_t*>(s), n);
}

int main() {
  UartBegin(kUart1);
  g_clock.Begin();

  const tflm_engine::Status status = tflm_engine::Begin();

  core::FillModelInfo(&g_info);
  for (int i = 0; i < 3; ++i) g_info.firmware_version[i] = core::kFirmwareVersion[i];
  g_info.startup_status = static_cast<uint8_t>(status);
  g_info.clock_hz = kReportedHz;
  g_info.board_name = kBoardName;
  g_info.startup_message = tflm_engine::status_message();

  core::Dispatcher* dispatcher = new (g_dispatcher_storage) core::Dispatcher(
      g_info, g_engine, g_clock, g_transport,
      core::Buffers{g_rx, sizeof g_rx, g_tx, sizeof g_tx, g_cache, sizeof g_cache, g_ops,
                    model::kOperatorCount});
  while (true) {
    dispatcher->Poll();
  }
}
