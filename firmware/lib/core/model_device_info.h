// Fills the model-derived part of DeviceInfo from the generated model_settings.h.
// Header-only and included only by the board layer and the host shim, so the core's .cpp
// files never depend on a generated file (the generated dir is an include path).
#pragma once

#include "device_info.h"
#include "model_settings.h"

namespace core {

namespace detail {
template <int Rank>
inline void FillTensor(TensorInfo* t, unsigned char dtype, const int (&dims)[Rank], float scale,
                       int zero_point) {
  static_assert(Rank >= 1 && Rank <= 4, "the protocol carries tensors of rank 1..4");
  t->dtype = dtype;
  t->rank = static_cast<uint8_t>(Rank);
  for (int i = 0; i < 4; ++i) t->dims[i] = i < Rank ? static_cast<uint16_t>(dims[i]) : 0;
  t->scale = scale;
  t->zero_point = zero_point;
}
}  // namespace detail

// Sets model_hash, input, output, arena_size and model_size; the caller sets firmware
// version, clock, board name and the engine's start-up status and message.
inline void FillModelInfo(DeviceInfo* info) {
  ParseModelHash(model::kModelHash, info->model_hash);
  detail::FillTensor(&info->input, model::kInputDtype, model::kInputDims, model::kInputScale,
                     model::kInputZeroPoint);
  detail::FillTensor(&info->output, model::kOutputDtype, model::kOutputDims, model::kOutputScale,
                     model::kOutputZeroPoint);
  info->arena_size = model::kArenaSize;
  info->model_size = model::kModelBytes;
}

}  // namespace core
