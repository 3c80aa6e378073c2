"""int8 quantization: calibration methods, graph rewrites (ReLU equalization, GPTQ, channel padding,
float ReLUs for XNNPACK), mixed precision, QAT, and the per-layer error report."""
