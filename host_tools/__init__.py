"""Host side of the toolchain: talk to the board (or the virtual board), evaluate, compare."""
