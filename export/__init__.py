"""ONNX export of zoo models and the onnxruntime-vs-torch benchmark.

    >>> from zoo.export import export_onnx, check_parity
    >>> model = zoo.create_model("resnet18", num_classes=10, stem="cifar")
    >>> export_onnx(model, "resnet18.onnx", input_size=(3, 32, 32))
    >>> check_parity(model, "resnet18.onnx", input_size=(3, 32, 32))  # {1: 4e-07, 4: 6e-07}

Command lines: ``python -m zoo.export`` (one model) and ``python -m zoo.export.bench``
(the efficiency comparison); both are also ``zoo export`` and ``zoo bench``.
"""
from .onnx import check_onnx, check_parity, create_session, export_onnx, load_model

__all__ = ["check_onnx", "check_parity", "create_session", "export_onnx", "load_model"]
