// vhost-user constants the native side needs (the rest of the protocol is
// TypeScript: fabrics/vhost/vhost-user-proto.ts holds the message layouts).
#pragma once

#include <cstddef>

namespace tsio {
namespace vhost {

// Message header: u32 request, u32 flags, u32 size (docs/interop/vhost-user.rst).
constexpr size_t kHeaderSize = 12;
constexpr size_t kHeaderSizeOffset = 8;
// QEMU's payload union is a few hundred bytes; anything larger is refused.
constexpr size_t kMaxPayload = 4096;
// At most 8 fds travel with one message (VHOST_MEMORY_BASELINE_NREGIONS).
constexpr int kMaxFds = 8;
// How long the rest of a message may lag behind its header (ms).
constexpr int kPayloadTimeoutMs = 2000;

}  // namespace vhost
}  // namespace tsio
