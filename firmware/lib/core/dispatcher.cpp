#include "dispatcher.h"

#include <string.h>

#include "frame.h"
#include "messages.h"

namespace core {

namespace {
// Bytes taken from the transport per Poll(): small, so the stack stays small.
constexpr size_t kPollChunk = 64;

// A reply is built while the request is still being read, so the buffers must not share bytes.
bool Disjoint(const uint8_t* a, size_t a_size, const uint8_t* b, size_t b_size) {
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a);
  const uintptr_t b0 = reinterpret_cast<uintptr_t>(b);
  return a0 + a_size <= b0 || b0 + b_size <= a0;
}
}  // namespace

Dispatcher::Dispatcher(const DeviceInfo& info, Engine& engine, Clock& clock, Transport& transport,
                       const Buffers& buffers)
    : info_(info),
      engine_(engine),
      clock_(clock),
      transport_(transport),
      buffers_(buffers),
      decoder_(buffers.rx, 0),
      input_bytes_(TensorBytes(info.input)),
      output_bytes_(TensorBytes(info.output)),
      max_payload_(MaxPayload(input_bytes_)),
      ok_(false),
      cache_() {
  const bool sizes_valid = input_bytes_ != 0 && output_bytes_ != 0 &&
                           max_payload_ <= kMaxPayloadField &&
                           kResultHeaderBytes + output_bytes_ <= kMaxPayloadField;
  ok_ = sizes_valid && buffers.rx != nullptr && buffers.tx != nullptr && buffers.cache != nullptr &&
        buffers.rx_size >= RxBufferBytes(input_bytes_) &&
        buffers.tx_size >= TxBufferBytes(output_bytes_) &&
        TxRawCapacity(static_cast<uint32_t>(buffers.tx_size)) >=
            RawFrameCapacity(MaxReplyPayload(output_bytes_)) &&
        buffers.cache_size >= CacheBufferBytes(output_bytes_) &&
        Disjoint(buffers.rx, buffers.rx_size, buffers.tx, buffers.tx_size) &&
        Disjoint(buffers.rx, buffers.rx_size, buffers.cache, buffers.cache_size) &&
        Disjoint(buffers.tx, buffers.tx_size, buffers.cache, buffers.cache_size);
  // The decoder enforces the advertised limit, not the (possibly larger) buffer size.
  decoder_.set_capacity(ok_ ? RawFrameCapacity(max_payload_) : 0);
}

void Dispatcher::Reset() {
  decoder_.Reset();
  ClearCache();
}

void Dispatcher::ClearCache() {
  for (CacheEntry& entry : cache_) entry.valid = 0;
  next_slot_ = 0;
}

void Dispatcher::Poll() {
  uint8_t chunk[kPollChunk];
  const size_t n = transport_.read(chunk, sizeof chunk);
  Feed(chunk, n > sizeof chunk ? sizeof chunk : n);
}

void Dispatcher::Feed(const uint8_t* data, size_t len) {
  if (!ok_ || data == nullptr) return;
  size_t used = 0;
  for (size_t i = 0; i < len; i += used) {
    switch (decoder_.FeedSome(data + i, len - i, &used)) {
      case CobsDecoder::kNone:
        break;
      case CobsDecoder::kFrame:
        HandleFrame(decoder_.data(), decoder_.size());
        break;
      case CobsDecoder::kBadCobs:
        SendCode(kNack, kSeqUnknown, kBadCobs, nullptr);
        break;
      case CobsDecoder::kTooLarge:
        SendCode(kError, kSeqUnknown, kFrameTooLarge, nullptr);
        break;
    }
  }
}

void Dispatcher::HandleFrame(const uint8_t* raw, size_t len) {
  ParsedFrame frame;
  const uint8_t fault = ParseFrame(raw, len, &frame);
  if (fault != 0) {
    SendCode(kNack, kSeqUnknown, fault, nullptr);
    return;
  }
  if (frame.version != kProtocolVersion) {
    SendCode(kError, frame.seq, kBadVersion, nullptr);
    return;
  }
  if (frame.type == kHello) {
    if (frame.payload_len != 0) {
      SendCode(kError, frame.seq, kBadPayload, nullptr);
      return;
    }
    ClearCache();  // a new session: earlier sequence numbers are not retransmissions
    SendInfo(frame.seq);
    return;
  }
  if (frame.type == kInfer) {
    HandleInfer(frame.seq, frame.payload, frame.payload_len);
    return;
  }
  if (frame.type == kProfile) {
    HandleProfile(frame.seq, frame.payload, frame.payload_len);
    return;
  }
  SendCode(kError, frame.seq, kUnknownType, nullptr);
}

bool Dispatcher::LoadInput(uint16_t seq, const uint8_t* payload, size_t len) {
  if (info_.startup_status != 0) {
    SendCode(kError, seq, kNotReady, info_.startup_message);
    return false;
  }
  if (len != input_bytes_) {
    SendCode(kError, seq, kBadPayload, nullptr);
    return false;
  }
  int8_t* input = engine_.input();
  const int8_t* output_check = engine_.output();
  // The engine checked its tensors against the settings at start-up; this guards the
  // copies against a wiring mistake instead of trusting it.
  if (input == nullptr || output_check == nullptr || engine_.input_bytes() != input_bytes_ ||
      engine_.output_bytes() != output_bytes_) {
    SendCode(kError, seq, kInvokeFailed, nullptr);
    return false;
  }
  memcpy(input, payload, input_bytes_);
  return true;
}

void Dispatcher::HandleInfer(uint16_t seq, const uint8_t* payload, size_t len) {
  if (info_.startup_status == 0 && len == input_bytes_) {
    for (size_t slot = 0; slot < kWindow; ++slot) {
      if (cache_[slot].valid && cache_[slot].seq == seq) {
        SendResult(seq, slot, kFlagReplayed);
        return;
      }
    }
  }
  if (!LoadInput(seq, payload, len)) return;

  const bool cycles_valid = clock_.has_cycles();
  const uint32_t t0 = clock_.micros();
  const uint32_t c0 = cycles_valid ? clock_.cycles() : 0;
  const bool invoked = engine_.invoke();
  const uint32_t c1 = cycles_valid ? clock_.cycles() : 0;
  const uint32_t t1 = clock_.micros();
  if (!invoked) {
    SendCode(kError, seq, kInvokeFailed, nullptr);
    return;
  }
  const size_t slot = next_slot_;
  next_slot_ = static_cast<uint8_t>((next_slot_ + 1) % kWindow);
  CacheEntry& entry = cache_[slot];
  entry.seq = seq;
  entry.valid = 1;
  entry.flags = cycles_valid ? kFlagCyclesValid : 0;
  entry.micros = t1 - t0;  // unsigned: correct across a wrap
  entry.cycles = c1 - c0;
  memcpy(buffers_.cache + slot * output_bytes_, engine_.output(), output_bytes_);
  SendResult(seq, slot, 0);
}

void Dispatcher::HandleProfile(uint16_t seq, const uint8_t* payload, size_t len) {
  if (buffers_.ops == nullptr || buffers_.ops_capacity == 0 || !engine_.can_profile()) {
    // The answer of a firmware that predates PROFILE, with the reason.
    SendCode(kError, seq, kUnknownType, "this firmware does not profile");
    return;
  }
  if (!LoadInput(seq, payload, len)) return;
  const bool cycles_valid = clock_.has_cycles();
  size_t count = 0;
  const uint32_t start = Ticks(clock_);
  const bool invoked = engine_.invoke_profiled(clock_, buffers_.ops, buffers_.ops_capacity, &count);
  const uint32_t total = Ticks(clock_) - start;
  if (!invoked) {
    SendCode(kError, seq, kInvokeFailed, nullptr);
    return;
  }
  size_t recorded = count < buffers_.ops_capacity ? count : buffers_.ops_capacity;
  if (recorded > kProfileOpsMax) recorded = kProfileOpsMax;
  size_t size = kProfileHeaderBytes;
  for (size_t i = 0; i < recorded; ++i) {
    size += kProfileEntryHeaderBytes + BoundedLength(buffers_.ops[i].name, kProfileNameMax);
  }
  FrameWriter writer(buffers_.tx, buffers_.tx_size);
  uint8_t* out = writer.Begin(kProfileResult, seq, size);
  if (out == nullptr) {
    // Only a board that sized its transmit buffer without its op count gets here.
    SendCode(kError, seq, kUnknownType, "profile larger than the reply buffer");
    return;
  }
  out[0] = static_cast<uint8_t>((cycles_valid ? kFlagCyclesValid : 0) | (recorded < count ? kFlagTruncated : 0));
  out[1] = static_cast<uint8_t>(recorded);
  PutU32(out + 2, total);
  uint8_t* p = out + kProfileHeaderBytes;
  for (size_t i = 0; i < recorded; ++i) {
    const size_t n = BoundedLength(buffers_.ops[i].name, kProfileNameMax);
    PutU32(p, buffers_.ops[i].ticks);
    p[4] = static_cast<uint8_t>(n);
    if (n != 0) memcpy(p + kProfileEntryHeaderBytes, buffers_.ops[i].name, n);
    p += kProfileEntryHeaderBytes + n;
  }
  const size_t n = writer.Finish();
  if (n != 0) transport_.write(writer.data(), n);
}

void Dispatcher::SendInfo(uint16_t seq) {
  FrameWriter writer(buffers_.tx, buffers_.tx_size);
  uint8_t* payload = writer.Begin(kInfo, seq, InfoPayloadSize(info_));
  if (payload == nullptr) return;
  EncodeInfo(info_, max_payload_, static_cast<uint32_t>(engine_.arena_used()), payload);
  const size_t n = writer.Finish();
  if (n != 0) transport_.write(writer.data(), n);
}

void Dispatcher::SendResult(uint16_t seq, size_t slot, uint8_t extra_flags) {
  const CacheEntry& entry = cache_[slot];
  FrameWriter writer(buffers_.tx, buffers_.tx_size);
  uint8_t* payload = writer.Begin(kResult, seq, kResultHeaderBytes + output_bytes_);
  if (payload == nullptr) return;
  EncodeResultHeader(static_cast<uint8_t>(entry.flags | extra_flags), entry.micros, entry.cycles, payload);
  memcpy(payload + kResultHeaderBytes, buffers_.cache + slot * output_bytes_, output_bytes_);
  const size_t n = writer.Finish();
  if (n != 0) transport_.write(writer.data(), n);
}

void Dispatcher::SendCode(uint8_t type, uint16_t seq, uint8_t code, const char* message) {
  const size_t message_len = (type == kError) ? BoundedLength(message, kErrorMessageMax) : 0;
  FrameWriter writer(buffers_.tx, buffers_.tx_size);
  uint8_t* payload = writer.Begin(type, seq, 1 + message_len);
  if (payload == nullptr) return;
  payload[0] = code;
  if (message_len != 0) memcpy(payload + 1, message, message_len);
  const size_t n = writer.Finish();
  if (n != 0) transport_.write(writer.data(), n);
}

}  // namespace core
