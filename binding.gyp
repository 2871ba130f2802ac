{
  # One addon, one registration file (native/addon.cc), one .cc per concern.
  # Only syscalls Node cannot make live here; everything else is TypeScript.
  "targets": [
    {
      "target_name": "tsio",
      "sources": ["<!@(ls -1 native/*.cc)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # C++ exceptions on: a thrown Napi::Error becomes a JS exception, so the
      # argument checks need no pending-exception plumbing.
      "defines": ["NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2"],
      # Ceph RBD (native/rbd.cc): librbd-dev and librados-dev, which scripts/install-deps installs.
      "libraries": ["-lrbd", "-lrados"]
    }
  ]
}
