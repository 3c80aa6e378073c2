"""Export a Keras classifier to TFLite and ONNX (fp32, fp16, int8), each verified against Keras."""
