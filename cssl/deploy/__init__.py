"""A fine-tuned model as a file for other runtimes: ONNX export (fp32 and int8) and the ONNX Runtime
acoustic model the Recognizer decodes through the same decoders."""
