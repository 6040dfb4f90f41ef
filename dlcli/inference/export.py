"""`dlcli export CKPT --format onnx|torchscript|safetensors --output FILE`: write the model, load
the written file back, and check it gives the PyTorch model's outputs on a sample batch."""

import json

from dlcli.errors import ConfigError, DataError, DlcliError
from dlcli.runs.paths import replaced_atomically, writable_output

FORMATS = ("onnx", "torchscript", "safetensors")
ONNX_INPUTS = ["input", "lengths"]  # the exported graph's input names (lengths: text classifiers)


def export(checkpoint_path: str, fmt: str, output: str, tolerance: float) -> dict:
    import torch

    from dlcli.training import checkpoint
    from dlcli.training.build import from_checkpoint

    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)} (got {fmt!r})")
    payload, source = checkpoint.load_for_inference(checkpoint_path)
    out = writable_output(output, "--output", reads=[source])
    config, meta, model, _, _ = from_checkpoint(payload, [], "cpu", source)
    model.eval()
    sample = sample_input(config, meta, model)
    sample = sample if isinstance(sample, tuple) else (sample,)  # the model's inputs (ids, lengths for texts)
    with torch.inference_mode():
        expected = model(*sample)
    writer, reader = {"onnx": (_write_onnx, _run_onnx), "torchscript": (_write_torchscript, _run_torchscript),
                      "safetensors": (_write_safetensors, _run_safetensors)}[fmt]
    # Written and checked beside the target, then renamed over it: a rejected export leaves an
    # existing file as it was, and a hard-linked file at that name (a run's best.pt/last.pt/step-*.pt
    # share one) is replaced, never written through.
    with replaced_atomically(out) as tmp:
        writer(model, sample, tmp, payload)
        diff = float((reader(tmp, sample) - expected).abs().max())
        if not diff <= tolerance:  # NaN fails too
            raise DlcliError(f"exported {fmt} model differs from the PyTorch model by {diff:.3g} (> {tolerance:g}); "
                             f"{out} not written")
    return {"format": fmt, "output": str(out), "max_abs_diff": diff, "tolerance": tolerance,
            "input_shape": ["batch", *sample[0].shape[1:]], "classes": meta.class_names}


def sample_input(config, meta, model):
    """A batch of 4 inputs of the kind the model reads (the task knows: images, token ids, GAN noise)."""
    import torch

    from dlcli.tasks import task_class

    return task_class(config.task).export_input(meta, model, torch.Generator().manual_seed(0))


def _write_torchscript(model, sample, out, payload):
    import torch

    torch.jit.trace(model, sample).save(str(out))


def _run_torchscript(out, sample):
    import torch

    with torch.inference_mode():
        return torch.jit.load(str(out))(*sample)


def _write_onnx(model, sample, out, payload):
    import torch

    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise DlcliError("ONNX export needs the onnx extra: pip install 'dlcli[onnx]'") from None
    names = ONNX_INPUTS[:len(sample)]
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    if len(sample) == 2:  # texts: any number of tokens (up to the model's max_len), their lengths per row
        axes |= {"input": {0: "batch", 1: "tokens"}, "lengths": {0: "batch"}}
    torch.onnx.export(model, sample, str(out), input_names=names, output_names=["logits"], dynamic_axes=axes,
                      dynamo=False)


def _run_onnx(out, sample):
    import torch

    try:
        import onnxruntime
    except ImportError:
        raise DlcliError("checking an ONNX export needs onnxruntime: pip install 'dlcli[onnx]'") from None
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {n: t.numpy() for n, t in zip(ONNX_INPUTS, sample)})[0])


def _write_safetensors(model, sample, out, payload):
    from safetensors.torch import save_model

    # save_model (not save_file) keeps tied weights (a language model's shared embedding) as one tensor
    save_model(model, str(out), metadata={"dlcli_config": json.dumps(payload["config"]),
                                          "dlcli_meta": json.dumps(payload["meta"])})


def _run_safetensors(out, sample):
    """Rebuild the model from the file's own metadata and weights, as a user of the file would."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_model

    from dlcli.config import validate
    from dlcli.data.pipeline import DataMeta
    from dlcli.training.build import build_model

    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "dlcli_config" not in metadata:
        raise DataError(f"{out}: no dlcli_config metadata")
    config = validate(json.loads(metadata["dlcli_config"]), source="checkpoint")
    meta = DataMeta.from_dict(json.loads(metadata["dlcli_meta"]))
    model = build_model(config, meta, torch.device("cpu"))
    load_model(model, str(out))
    model.eval()
    with torch.inference_mode():
        return model(*sample)
