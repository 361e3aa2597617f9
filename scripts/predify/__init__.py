"""Python toolchain of predify-serve: configs, training, reference dynamics and ONNX export."""
