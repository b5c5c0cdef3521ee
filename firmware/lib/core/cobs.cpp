#include "cobs.h"

#include <string.h>

namespace core {

size_t CobsEncode(const uint8_t* src, size_t len, uint8_t* dst, size_t dst_cap) {
  if (dst_cap == 0) return 0;
  size_t out = 1;
  size_t code_pos = 0;
  uint8_t code = 1;
  for (size_t i = 0; i < len; ++i) {
    const uint8_t byte = src[i];  // read before any write that may land on the same cell
    if (byte == 0) {
      dst[code_pos] = code;
      if (out >= dst_cap) return 0;
      code_pos = out++;
      code = 1;
      continue;
    }
    if (out >= dst_cap) return 0;
    dst[out++] = byte;
    if (++code == 0xFF) {
      dst[code_pos] = code;
      if (i + 1 == len) return out;  // full last block: no empty block after it
      if (out >= dst_cap) return 0;
      code_pos = out++;
      code = 1;
    }
  }
  dst[code_pos] = code;
  return out;
}

void CobsDecoder::Reset() {
  len_ = 0;
  remaining_ = 0;
  zero_pending_ = false;
  started_ = false;
  overflow_ = false;
}

void CobsDecoder::Append(uint8_t byte) {
  if (len_ < cap_) {
    buf_[len_++] = byte;
  } else {
    overflow_ = true;  // keep swallowing until the delimiter, then report once
  }
}

CobsDecoder::Event CobsDecoder::Feed(uint8_t byte) {
  if (byte == 0) {
    Event event = kFrame;
    if (!started_) {
      event = kNone;  // empty frame between two delimiters: ignored
    } else if (overflow_) {
      event = kTooLarge;
    } else if (remaining_ != 0) {
      event = kBadCobs;
    }
    const size_t frame_len = len_;
    Reset();
    len_ = (event == kFrame) ? frame_len : 0;  // data() stays valid until the next Feed()
    return event;
  }
  if (!started_) {
    started_ = true;
    len_ = 0;
  }
  if (remaining_ == 0) {  // a code byte
    if (zero_pending_) Append(0);
    remaining_ = static_cast<uint8_t>(byte - 1);
    zero_pending_ = (byte != 0xFF);
  } else {
    Append(byte);
    --remaining_;
  }
  return kNone;
}

CobsDecoder::Event CobsDecoder::FeedSome(const uint8_t* data, size_t len, size_t* consumed) {
  size_t i = 0;
  while (i < len) {
    if (remaining_ != 0 && started_ && !overflow_) {
      // Inside a block: every byte up to the block's end is data unless a 0x00 (delimiter)
      // cuts it short, which Feed() below then reports.
      size_t run = remaining_ < len - i ? remaining_ : len - i;
      const void* zero = memchr(data + i, 0, run);
      if (zero != nullptr) run = static_cast<size_t>(static_cast<const uint8_t*>(zero) - (data + i));
      if (run > cap_ - len_) run = cap_ - len_;  // the rest goes through Feed(), which flags overflow
      if (run != 0) {
        memcpy(buf_ + len_, data + i, run);
        len_ += run;
        remaining_ = static_cast<uint8_t>(remaining_ - run);
        i += run;
        continue;
      }
    }
    const Event event = Feed(data[i++]);
    if (event != kNone) {
      *consumed = i;
      return event;
    }
  }
  *consumed = i;
  return kNone;
}

}  // namespace core
