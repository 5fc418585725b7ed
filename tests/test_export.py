"""ONNX export (cssl export): the file computes the eager model's function, carries what decoding needs,
decodes through the same Recognizer, and refuses what it cannot be."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cssl.cli import main as cli
from cssl.convert.loading import load_model
from cssl.decode.recognizer import Recognizer
from cssl.deploy.export import export_onnx
from cssl.deploy.metadata import ExportMetadata
from cssl.deploy.onnx_model import OnnxCTCModel
from cssl.train.checkpoint import CheckpointError
from tests.conftest import tone, write
from tests.test_recognizer import checkpoint

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """One small fine-tuned checkpoint with an informative head, exported fp32 (by the command) and int8."""
    folder = tmp_path_factory.mktemp("export")
    ckpt = checkpoint(folder, temperature=1.7, prefer_a=False)
    assert cli(["export", str(ckpt), str(folder / "model.onnx")]) == 0
    export_onnx(ckpt, folder / "model-int8.onnx", int8=True)
    return {"ckpt": ckpt, "fp32": folder / "model.onnx", "int8": folder / "model-int8.onnx"}


def test_the_file_computes_the_eager_function_for_any_batch_and_length(exported) -> None:
    eager = load_model(exported["ckpt"]).model.eval()
    onnx = OnnxCTCModel(exported["fp32"])
    torch.manual_seed(3)
    # batch sizes and lengths other than the export example's, padding in the batch, and one shorter than
    # a receptive field (padded to one window: no valid frame, as in the eager model)
    for lengths in ([7000], [16000, 9999, 12345], [52000, 400], [300]):
        waves = torch.randn(len(lengths), max(lengths)) * 0.1
        lengths = torch.tensor(lengths)
        with torch.no_grad():
            want, want_frames = eager(waves, lengths)
        got, got_frames = onnx(waves, lengths)
        assert torch.equal(got_frames, want_frames)
        valid = torch.arange(want.shape[1])[None, :] < want_frames[:, None]  # (B, T)
        assert got.shape == want.shape
        assert torch.allclose(got[valid], want[valid], atol=1e-4, rtol=1e-4)


def test_the_file_carries_vocabulary_temperature_and_geometry(exported) -> None:
    loaded = load_model(exported["ckpt"])
    meta = OnnxCTCModel(exported["fp32"]).meta
    assert meta.symbols == loaded.vocab.symbols
    assert meta.temperature == pytest.approx(1.7)
    assert meta.normalize == loaded.normalize
    assert (meta.stride, meta.receptive_field) == (320, 400)
    assert meta.quantization == "none"
    assert OnnxCTCModel(exported["int8"]).meta.quantization == "int8-dynamic"


def test_the_recognizer_decodes_the_file_as_the_checkpoint(exported, tmp_path: Path) -> None:
    audio = write(tmp_path / "a.wav", tone(2.3, 300) + 0.05 * torch.randn(int(2.3 * 16000)).numpy())
    eager = Recognizer.from_checkpoint(exported["ckpt"], chunk_seconds=1.0, overlap_seconds=0.4)
    onnx = Recognizer.from_checkpoint(exported["fp32"], chunk_seconds=1.0, overlap_seconds=0.4)
    assert onnx.temperature == pytest.approx(eager.temperature)
    wave = torch.randn(37000) * 0.1
    assert torch.allclose(onnx.log_probs(wave), eager.log_probs(wave), atol=1e-4)
    a, b = eager.transcribe(audio), onnx.transcribe(audio)
    assert a.text == b.text and a.text
    assert [(w.word, w.start, w.end) for w in a.words] == [(w.word, w.start, w.end) for w in b.words]
    assert [w.confidence for w in a.words] == pytest.approx([w.confidence for w in b.words], abs=1e-4)


def test_int8_weights_shrink_the_file_and_stay_close(exported) -> None:
    assert exported["int8"].stat().st_size < 0.6 * exported["fp32"].stat().st_size
    waves = torch.randn(2, 32000) * 0.1
    lengths = torch.tensor([32000, 20000])
    full, _ = OnnxCTCModel(exported["fp32"])(waves, lengths)
    small, _ = OnnxCTCModel(exported["int8"])(waves, lengths)
    assert not torch.equal(full, small)  # quantised: not the same numbers
    error = (small - full).norm() / full.norm()
    assert error < 0.1


def test_a_pretraining_checkpoint_is_refused(tmp_path: Path) -> None:
    from cssl.convert.payload import pretrain_payload
    from cssl.model import build_pretrainer
    from cssl.train.checkpoint import save_checkpoint
    from tests.test_model import small

    path = tmp_path / "pre.pt"
    save_checkpoint(path, pretrain_payload(small(), build_pretrainer(small()).state_dict(), normalize=False,
                                           source="test", loss={}))
    with pytest.raises(CheckpointError, match="no CTC head"):
        export_onnx(path, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_an_onnx_file_without_our_metadata_names_what_is_missing(exported, tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(exported["fp32"]))
    keep = [(p.key, p.value) for p in proto.metadata_props]
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(CheckpointError, match="without this suite's metadata"):
        Recognizer.from_checkpoint(tmp_path / "bare.onnx")
    for key, value in keep:
        if key != "cssl.temperature":
            proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(tmp_path / "partial.onnx"))
    with pytest.raises(CheckpointError, match="lacks cssl.temperature"):
        OnnxCTCModel(tmp_path / "partial.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load it"):
        OnnxCTCModel(tmp_path / "junk.onnx")


def test_metadata_round_trips() -> None:
    meta = ExportMetadata(("<blank>", "<unk>", "|", "A"), 1.25, True, 16000, 320, 400, "none", "x", "{}")
    assert ExportMetadata.from_props(meta.to_props(), "m") == meta


def test_a_stream_runs_the_exported_file_as_the_checkpoint(exported) -> None:
    torch.manual_seed(4)
    wave = torch.randn(16000 * 3) * 0.1
    results = []
    for path in (exported["ckpt"], exported["fp32"]):
        stream = Recognizer.from_checkpoint(path).stream(left_seconds=1.0, right_seconds=0.4, update_seconds=0.3)
        for start in range(0, wave.numel(), 2560):
            stream.accept(wave[start : start + 2560])
        results.append((stream.finish(), torch.cat(stream.committed)))
    (eager, eager_lp), (onnx, onnx_lp) = results
    assert onnx.text == eager.text
    assert torch.allclose(onnx_lp, eager_lp, atol=1e-4)
