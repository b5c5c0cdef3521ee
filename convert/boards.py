"""Memory budgets of the boards the firmware targets, with the reserves the rest of the firmware needs.

Only the model data (flash) and the tensor arena (RAM) vary with the model; everything else the
firmware links is covered by a fixed reserve. Figures are from Cortex-M4F builds of TFLM with
arm-none-eabi GCC 12 and the Arduino Mbed core's board definition; see each constant.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import UsageError

KIB = 1024


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    flash_bytes: int  # flash a sketch may use (total minus bootloader)
    ram_bytes: int
    flash_reserve_bytes: int  # everything in flash except the model data
    ram_reserve_bytes: int  # everything in RAM except the tensor arena
    clock_hz: int

    @property
    def flash_for_model(self) -> int:
        return self.flash_bytes - self.flash_reserve_bytes

    @property
    def ram_for_arena(self) -> int:
        return self.ram_bytes - self.ram_reserve_bytes


NANO33BLE = Board(
    name="nano33ble",
    description="Arduino Nano 33 BLE Sense (nRF52840, Cortex-M4F @ 64 MHz)",
    # 1 MB flash, of which the Arduino bootloader keeps the first 64 KB (the Mbed core's
    # boards.txt allows 983,040 bytes for a sketch).
    flash_bytes=1024 * KIB - 64 * KIB,
    ram_bytes=256 * KIB,
    # Mbed OS core with USB CDC about 150 KB; TFLM with CMSIS-NN kernels 88 KB including about
    # 17 KB of newlib/libgcc (arm-none-eabi GCC 12, -Os); protocol core and board layer a few KB.
    # 256 KB leaves about 15 KB of headroom over that sum for -O2 builds (107 KB TFLM).
    flash_reserve_bytes=256 * KIB,
    # Mbed OS kernel, heap and thread stacks (main stack 4 KB, idle/timer threads), USB CDC
    # buffers, the firmware's static frame buffers (two frames of at most a few KB) and the
    # TFLM interpreter object: 64 KB keeps the arena clear of the heap that Mbed grows at run time.
    ram_reserve_bytes=64 * KIB,
    clock_hz=64_000_000,
)

BOARDS: dict[str, Board] = {NANO33BLE.name: NANO33BLE}


def board_by_name(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UsageError(f"unknown board '{name}' (known: {', '.join(sorted(BOARDS))})") from None
