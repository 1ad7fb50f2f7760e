"""Deployment: ONNX and TorchScript export with metadata and parity checks, and the runtimes that
predict with the exported files (``foveal predict --weights model.onnx``)."""
