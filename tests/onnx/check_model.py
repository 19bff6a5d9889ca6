#!/usr/bin/env python3
"""Checks an exported ONNX file with onnx.checker (python3-onnx), shape inference included.

Usage: check_model.py FILE.onnx. Prints one line and exits 0 when the graph is valid; raises
onnx.checker.ValidationError (exit 1) naming what is wrong otherwise.
"""
import sys

import onnx

path = sys.argv[1]
model = onnx.load(path)
# full_check also runs strict shape inference, which rejects a node whose inputs cannot have
# the shapes its operator needs.
onnx.checker.check_model(model, full_check=True)
inputs = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
          for i in model.graph.input]
outputs = [o.name for o in model.graph.output]
print(f"{path}: passes onnx.checker; opset {model.opset_import[0].version}, "
      f"inputs {inputs}, outputs {outputs}, {len(model.graph.node)} nodes")
