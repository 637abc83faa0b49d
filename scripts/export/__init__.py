"""Export of the 9 published encoders to ONNX (see scripts/export_models.py)."""
