// Registration only: each concern adds its functions and constants.
#include "common.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tsio::InitFileOps(env, exports);
  tsio::InitBlockDev(env, exports);
  tsio::InitMemory(env, exports);
  tsio::InitSgIo(env, exports);
  tsio::InitCrc32c(env, exports);
  tsio::InitVhostUser(env, exports);
  tsio::InitSocket(env, exports);
  tsio::InitRbd(env, exports);
  tsio::InitUring(env, exports);
  tsio::InitInotify(env, exports);
  tsio::InitLoop(env, exports);
  return exports;
}

NODE_API_MODULE(tsio, Init)
