"""An ONNX file as a real black box: run by onnxruntime, attacked with queries only.

    net = load_onnx("model.onnx")               # -> ScoreModel, access = "scores"
    Square(Linf(eps=0.3))(net, x, y)

onnxruntime is the optional extra ``pip install advrobust[onnx]``; it is imported only here.
"""

from __future__ import annotations

import os
from pathlib import Path

from advrobust.errors import ModelLoadError
from advrobust.models.blackbox import ScoreModel


def load_onnx(
    path: str | os.PathLike[str],
    *,
    probabilities: bool = False,
    batch_size: int | None = None,
    providers: list[str] | None = None,
) -> ScoreModel:
    """Load ``path`` into an onnxruntime session and wrap it as a :class:`ScoreModel`.

    The graph must take one float input ``N×C×H×W`` of ``[0, 1]`` pixels (normalization inside the
    graph) and return scores ``N×K`` as its first output; ``probabilities=True`` if those are
    probabilities (default ``False``: logits). ``batch_size`` caps the rows of one ``run`` (default:
    the whole batch; give 1 for a graph exported with a fixed batch of 1). ``providers`` defaults to
    onnxruntime's CPU provider.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError("loading ONNX models needs onnxruntime: pip install 'advrobust[onnx]'") from None
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"ONNX model {os.fspath(path)!r} does not exist: check the path")
    try:
        session = ort.InferenceSession(str(file), providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"onnxruntime cannot load {file}: {first}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelLoadError(f"{file} has {len(inputs)} inputs; an image classifier takes exactly one (N, C, H, W)")
    in_name, out_name = inputs[0].name, outputs[0].name
    width = outputs[0].shape[-1] if outputs[0].shape else None
    num_classes = width if isinstance(width, int) and width >= 2 else None

    def run(x):  # numpy float32 in, numpy scores out
        return session.run([out_name], {in_name: x})[0]

    model = ScoreModel(run, num_classes=num_classes, probabilities=probabilities, numpy=True, batch_size=batch_size)
    model.source = str(file)
    return model
