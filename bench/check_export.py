"""Checks a Diffuse export with Python's onnx checker and onnxruntime (a second runtime's view).

    /tmp/venv/bin/python bench/check_export.py EXPORT_DIR

The venv is the local wheelhouse's onnx and onnxruntime (never a dependency of the project)."""
import pathlib
import sys

import onnx
import onnxruntime as ort

root = pathlib.Path(sys.argv[1])
for component in ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder']:
    file = root / component / 'model.onnx'
    if not file.exists():
        continue
    onnx.checker.check_model(onnx.load(str(file)), full_check=True)
    session = ort.InferenceSession(str(file), providers=['CPUExecutionProvider'])
    inputs = [(i.name, i.shape, i.type) for i in session.get_inputs()]
    outputs = [(o.name, o.shape) for o in session.get_outputs()]
    print(f'{component}: onnx {onnx.__version__} full check passed; onnxruntime {ort.__version__}: {inputs} -> {outputs}')
