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
      "cflags!": [
        "-fno-exceptions"
      ],
      "cflags_cc!": [
        "-fno-exceptions",
        "-std=gnu++17",
        "-std=gnu++1y",
        "-fno-rtti"
      ],
      "cflags_cc": [
        "-std=c++20",
        "-O2",
        "-Wall",
        "-Wextra",
        "-fvisibility=hidden",
        "-fvisibility-inlines-hidden"
      ],
      "ldflags": [
        "-pthread"
      ],
      "libraries": [
        "-ldl"
      ]
    },
    {
      "target_name": "l4lb_af_xdp",
      "conditions": [
        [
          "af_xdp==1",
          {
            "type": "shared_library",
            "product_dir": "<(PRODUCT_DIR)",
            "product_prefix": "",
            "sources": [
              "<!@(node tools/native-sources.mjs af_xdp xdp)"
            ],
            "actions": [
              {
                "action_name": "xdp_object",
                "inputs": [
                  "native/xdp/l4lb_xdp.c",
                  "native/xdp/l4lb_xdp_maps.h",
                  "tools/build-xdp-object.mjs"
                ],
                "outputs": [
                  "<(INTERMEDIATE_DIR)/l4lb_xdp_object.cc"
                ],
                "action": [
                  "node",
                  "tools/build-xdp-object.mjs",
                  "native/xdp/l4lb_xdp.c",
                  "<(INTERMEDIATE_DIR)/l4lb_xdp_object.cc"
                ],
                "process_outputs_as_sources": 1
              }
            ],
            "include_dirs": [
              "native"
            ],
            "cflags!": [
              "-fno-exceptions"
            ],
            "cflags_cc!": [
              "-fno-exceptions",
              "-std=gnu++17",
              "-std=gnu++1y",
              "-fno-rtti"
            ],
            "cflags_cc": [
              "-std=c++20",
              "-O2",
              "-Wall",
              "-Wextra",
              "-fvisibility=hidden",
              "-fvisibility-inlines-hidden"
            ],
            "cflags": [
              "<!@(pkg-config --cflags libxdp libbpf)"
            ],
            "libraries": [
              "<!@(pkg-config --libs libxdp libbpf)"
            ]
          },
          {
            "type": "none"
          }
        ]
      ]
    },
    {
      "target_name": "l4lb_dpdk",
      "conditions": [
        [
          "dpdk==1",
          {
            "type": "shared_library",
            "product_dir": "<(PRODUCT_DIR)",
            "product_prefix": "",
            "sources": [
              "<!@(node tools/native-sources.mjs dpdk xdp)"
            ],
            "actions": [
              {
                "action_name": "dpdk_xdp_object",
                "inputs": [
                  "native/xdp/l4lb_xdp.c",
                  "native/xdp/l4lb_xdp_maps.h",
                  "tools/build-xdp-object.mjs"
                ],
                "outputs": [
                  "<(INTERMEDIATE_DIR)/l4lb_dpdk_xdp_object.cc"
                ],
                "action": [
                  "node",
                  "tools/build-xdp-object.mjs",
                  "native/xdp/l4lb_xdp.c",
                  "<(INTERMEDIATE_DIR)/l4lb_dpdk_xdp_object.cc",
                  "l4lb_dpdk_xdp_object",
                  "-DL4LB_XDP_QUEUE_SOCKETS"
                ],
                "process_outputs_as_sources": 1
              }
            ],
            "include_dirs": [
              "native"
            ],
            "cflags!": [
              "-fno-exceptions"
            ],
            "cflags_cc!": [
              "-fno-exceptions",
              "-std=gnu++17",
              "-std=gnu++1y",
              "-fno-rtti"
            ],
            "cflags_cc": [
              "-std=c++20",
              "-O2",
              "-Wall",
              "-Wextra",
              "-fvisibility=hidden",
              "-fvisibility-inlines-hidden"
            ],
            "cflags": [
              "<!@(node tools/build-xdp-object.mjs --dpdk-cflags)"
            ],
            "libraries": [
              "<!@(pkg-config --libs libdpdk libbpf)",
              "-lrte_bus_vdev"
            ]
          },
          {
            "type": "none"
          }
        ]
      ]
    }
  ],
  "variables": {
    "af_xdp%": "<!(node tools/build-xdp-object.mjs --available)",
    "dpdk%": "<!(node tools/build-xdp-object.mjs --dpdk-available)"
  }
}
