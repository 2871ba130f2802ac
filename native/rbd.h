// Ceph RADOS and RBD for the addon: the pieces other concerns of the addon
// (rados.cc, the objects gateways share state through) build on.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <functional>
#include <string>

#include "common.h"

namespace tsio {
namespace rbd {

// Work that blocks on the cluster (connect, open, resize, lock calls): it
// runs on the libuv pool and returns 0 or a negative errno, naming the call
// that failed in *what; `done` builds the value the promise resolves with, on
// the loop. A failure rejects with ErrnoError(-r, what).
using Work = std::function<int(std::string* what)>;
using Done = std::function<Napi::Value(Napi::Env)>;
Napi::Promise Run(Napi::Env env, const char* what, Work work, Done done);

// The rados_t behind a cluster object made by rbdConnect (JS holds it).
rados_t ClusterHandle(Napi::Value cluster);

// Shared gateway state in RADOS objects (native/rados.cc): radosObjects().
void InitRados(Napi::Env env, Napi::Object exports);

}  // namespace rbd
}  // namespace tsio
