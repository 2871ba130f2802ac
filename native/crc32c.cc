// CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143 13.1).
// The SSE4.2 crc32 instruction when the CPU has it, a byte table otherwise.
#include <cstring>

#include "common.h"

namespace tsio {
namespace {

uint32_t table[256];

void BuildTable() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
}

uint32_t CrcTable(uint32_t crc, const uint8_t* p, size_t n) {
  while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t CrcHw(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
const bool hasHw = __builtin_cpu_supports("sse4.2");
#else
uint32_t CrcHw(uint32_t crc, const uint8_t* p, size_t n) { return CrcTable(crc, p, n); }
const bool hasHw = false;
#endif

// crc32c(buf, prev = 0): prev is an earlier result, to continue over several buffers.
Napi::Value Crc32c(const Napi::CallbackInfo& info) {
  Napi::Buffer<uint8_t> b = ArgBuffer(info, 0, "buf");
  uint32_t prev = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 0;
  uint32_t crc = ~prev;
  crc = hasHw ? CrcHw(crc, b.Data(), b.Length()) : CrcTable(crc, b.Data(), b.Length());
  return Napi::Number::New(info.Env(), ~crc);
}

}  // namespace

void InitCrc32c(Napi::Env env, Napi::Object exports) {
  BuildTable();
  exports.Set("crc32c", Napi::Function::New(env, Crc32c, "crc32c"));
  exports.Set("crc32cHardware", Napi::Boolean::New(env, hasHw));
}

}  // namespace tsio
