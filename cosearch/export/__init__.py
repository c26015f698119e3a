"""Export of searched models: ONNX plus a model card."""

from cosearch.export.onnx_export import export, load_model

__all__ = ["export", "load_model"]
