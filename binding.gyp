{
  "targets": [
    {
      "target_name": "ringfence_sensor",
      "sources": [
        "native/addon.cc",
        "native/sensor_handle.cc",
        "native/ring_reader.cc",
        "native/btf_layout.cc",
        "native/libbpf_log.cc",
        "native/peer_credentials.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "bpf",
        "bpf/.output"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS"
      ],
      "cflags!": [
        "-fno-exceptions"
      ],
      "cflags_cc!": [
        "-fno-exceptions"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-Wno-missing-field-initializers",
        "-Wno-unused-parameter"
      ],
      "libraries": [
        "-lbpf",
        "-lelf",
        "-lz"
      ]
    },
    {
      "target_name": "ringfence_seal",
      "type": "executable",
      "sources": [
        "native/seal.c"
      ],
      "cflags": [
        "-std=gnu11",
        "-Wall",
        "-Wextra",
        "-Werror"
      ],
      "libraries": [
        "-l:libseccomp.a"
      ]
    }
  ]
}
