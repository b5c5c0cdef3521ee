// TFLM's DebugLog on the host: the board's library routes it to Serial (system_setup.cpp);
// the host build keeps the last lines instead, so an error can quote TFLM's own words.
#ifndef TM_HOST_LOG_H_
#define TM_HOST_LOG_H_

#ifdef __cplusplus
extern "C" {
#endif

/* What TFLM logged since the last clear (bounded, NUL-terminated, newlines as "; "). */
const char* tm_host_last_log(void);
void tm_host_clear_log(void);

#ifdef __cplusplus
}
#endif

#endif /* TM_HOST_LOG_H_ */
