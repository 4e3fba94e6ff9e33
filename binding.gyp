{
  "targets": [
    {
      "target_name": "l4lb",
      "sources": [
        "<!@(node tools/native-sources.mjs core io engine realserver addon bench)"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++1y", "-fno-rtti"],
      "cflags_cc": [
        "-std=c++20",
        "-O2",
        "-Wall",
        "-Wextra",
        "-fvisibility=hidden",
        "-fvisibility-inlines-hidden"
      ],
      "ldflags": ["-pthread"]
    }
  ]
}
