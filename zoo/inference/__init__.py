"""From images to answers (runtime: predict, torch or ONNX, and the ONNX sessions export checks with). Above zoo.hub,
whose factory builds the model."""
