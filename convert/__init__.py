"""Export a Keras classifier to TFLite and ONNX (fp32, fp16, int8), each verified against Keras before it is
published in the bundle; int8 quantization lives in convert/int8/."""
