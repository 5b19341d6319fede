"""Export to ONNX with graph and parity checks (needs torch and onnx)."""

from .onnx_export import (
    DEFAULT_OPSET,
    TENSORRT_OPS,
    ExportError,
    ExportReport,
    ParityReport,
    SplitExportReport,
    check_index_arithmetic,
    check_ops,
    export_onnx,
    export_split_onnx,
)

__all__ = [
    "DEFAULT_OPSET",
    "TENSORRT_OPS",
    "ExportError",
    "ExportReport",
    "ParityReport",
    "SplitExportReport",
    "check_index_arithmetic",
    "check_ops",
    "export_onnx",
    "export_split_onnx",
]
