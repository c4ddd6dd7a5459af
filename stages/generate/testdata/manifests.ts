/** Kernel manifests (kernel.json) the generate tests sweep. */

/** A Triton RMSNorm kernel: main.py, its sweep point in tp_params.py, two points of BLOCK. */
export const RMS_TRITON = {
  name: "rms_triton",
  author: "tracepipe",
  op_type: "rmsnorm",
  definition_regex: "rmsnorm_h\\d+",
  spec: {
    language: "triton",
    target_hardware: ["H100"],
    entry_point: "main.py::run",
    destination_passing_style: false,
  },
  sources: ["main.py"],
  params_file: "tp_params.py",
  params: { BLOCK: [64, 128] },
};
