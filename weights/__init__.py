"""Model files shipped with the project (manifest.json, *.onnx, *.pt); see inference/weights.py."""
