from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cssl.data.manifest import Entry, Manifest, ManifestError, read_manifest, write_manifest


def _manifest(root: Path, labeled: bool = True) -> Manifest:
    return Manifest(root, [
        Entry("a/one.flac", 16000, "HELLO WORLD" if labeled else None, "spk1" if labeled else None),
        Entry("b/two.wav", 24000, "IT'S FINE" if labeled else None, "spk2" if labeled else None),
    ])


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
@pytest.mark.parametrize("labeled", [True, False])
def test_round_trip(tmp_path: Path, suffix: str, labeled: bool) -> None:
    root = tmp_path / "audio"
    root.mkdir()
    m = _manifest(root, labeled)
    path = tmp_path / f"train{suffix}"
    write_manifest(m, path)
    back = read_manifest(path)
    def rows(man: Manifest) -> list[tuple]:
        return [(man.audio_path(e).resolve(), e.num_samples, e.text) for e in man]

    assert rows(back) == rows(m)
    if suffix == ".jsonl":
        assert [e.speaker for e in back] == [e.speaker for e in m]


def test_tsv_writes_fairseq_label_files(tmp_path: Path) -> None:
    write_manifest(_manifest(tmp_path), tmp_path / "train.tsv")
    lines = (tmp_path / "train.tsv").read_text().splitlines()
    assert lines[0] == str(tmp_path.resolve()) and lines[1] == "a/one.flac\t16000"
    assert (tmp_path / "train.wrd").read_text().splitlines() == ["HELLO WORLD", "IT'S FINE"]
    assert (tmp_path / "train.ltr").read_text().splitlines()[0] == "H E L L O | W O R L D |"


def test_tsv_reads_ltr_when_no_wrd(tmp_path: Path) -> None:
    (tmp_path / "x.tsv").write_text(f"{tmp_path}\na.wav\t100\n")
    (tmp_path / "x.ltr").write_text("A B | C |\n")
    assert read_manifest(tmp_path / "x.tsv")[0].text == "AB C"


def test_nemo_duration_and_relative_paths(tmp_path: Path) -> None:
    line = {"audio_filepath": "clips/a.wav", "duration": 1.5, "text": "hi"}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n\n")
    m = read_manifest(tmp_path / "m.jsonl")
    assert m[0].num_samples == 24000 and m[0].duration == 1.5
    assert m.audio_path(m[0]) == tmp_path.resolve() / "clips/a.wav"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("noroot.tsv", "/does/not/exist\na.wav\t1\n", r"noroot\.tsv:1: root folder .* does not exist"),
        ("cols.tsv", "{root}\na.wav\t1\nb.wav\n", r"cols\.tsv:3: expected 'path<TAB>num_samples'"),
        ("num.tsv", "{root}\na.wav\tmany\n", r"num\.tsv:2: num_samples 'many' is not an integer"),
        ("neg.tsv", "{root}\na.wav\t-4\n", r"neg\.tsv:2: num_samples -4 is negative"),
        ("empty.tsv", "", r"empty\.tsv:1: empty manifest"),
        ("json.jsonl", '{"audio_filepath": "a", "duration": 1}\n{oops\n', r"json\.jsonl:2: not valid JSON"),
        ("keys.jsonl", '{"path": "a"}\n', r"keys\.jsonl:1: each line needs"),
        ("dur.jsonl", '{"audio_filepath": "a", "duration": "x"}\n', r"dur\.jsonl:1: 'duration' must be"),
        ("fmt.csv", "a,b\n", r"unknown manifest format"),
    ],
)
def test_malformed_manifests_name_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content.replace("{root}", str(tmp_path)))
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_mismatched_label_count_and_non_utf8(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_text(f"{tmp_path}\na.wav\t1\nb.wav\t2\n")
    (tmp_path / "m.wrd").write_text("ONLY ONE\n")
    with pytest.raises(ManifestError, match=r"m\.wrd: 1 label lines for 2 audio lines"):
        read_manifest(tmp_path / "m.tsv")
    (tmp_path / "m.wrd").write_bytes(b"A\n\xff\xfe B\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(tmp_path / "m.tsv")
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "absent.tsv")


def test_length_filter(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    kept, dropped = m.filter_length(min_samples=20000)
    assert [e.path for e in kept] == ["b/two.wav"] and dropped == 1
    kept, dropped = m.filter_length(max_samples=20000)
    assert [e.path for e in kept] == ["a/one.flac"] and dropped == 1


def test_lhotse_cutset_whole_recording_cuts_read_as_entries(tmp_path: Path, monkeypatch) -> None:
    import gzip
    import json

    from cssl.data.audio import load_audio
    from tests.conftest import tone, write

    monkeypatch.chdir(tmp_path)  # lhotse keeps relative sources relative to the working folder
    write(tmp_path / "a.flac", tone(1.0))
    write(tmp_path / "b.wav", tone(0.5, rate=8000), rate=8000)

    def cut(name: str, source: str, duration: float, rate: int, start: float = 0.0, rec_duration: float | None = None,
            kind: str = "file", text: str | None = "HELLO") -> dict:
        rec = {"id": f"rec-{name}", "sources": [{"type": kind, "channels": [0], "source": source}],
               "sampling_rate": rate, "num_samples": int((rec_duration or duration) * rate),
               "duration": rec_duration or duration}
        sups = [{"id": f"sup-{name}", "recording_id": rec["id"], "start": 0.0, "duration": duration, "channel": 0,
                 "text": text, "speaker": "spk1"}]
        return {"id": name, "start": start, "duration": duration, "channel": 0, "supervisions": sups,
                "recording": rec, "type": "MonoCut"}

    def save(name: str, cuts: list[dict]) -> Path:
        path = tmp_path / name
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(c) + "\n" for c in cuts)
        return path

    manifest = read_manifest(save("cuts.jsonl.gz", [cut("a", "a.flac", 1.0, 16000), cut("b", "b.wav", 0.5, 8000)]))
    assert [(e.path, e.num_samples, e.text, e.speaker) for e in manifest] == [
        ("a.flac", 16000, "HELLO", "spk1"), ("b.wav", 8000, "HELLO", "spk1")]
    assert load_audio(manifest.audio_path(manifest[1])).numel() == 8000  # resampled to 16 kHz: length as listed
    with pytest.raises(ManifestError, match=r"cuts2.jsonl.gz:1: cut s is a segment \(0.20\+0.50 s\) of recording rec-s"):
        read_manifest(save("cuts2.jsonl.gz", [cut("s", "a.flac", 0.5, 16000, start=0.2, rec_duration=1.0)]))
    with pytest.raises(ManifestError, match=r"cut u: audio sources \['url'\]"):
        read_manifest(save("cuts3.jsonl.gz", [cut("u", "http://x/a.flac", 1.0, 16000, kind="url")]))


def test_lhotse_cuts_cssl_cannot_honour_are_refused_by_line(tmp_path: Path) -> None:
    import json

    from tests.conftest import tone, write

    write(tmp_path / "st.wav", np.stack([tone(1.0), tone(1.0, 300)], axis=1))  # 2 channels
    rec = {"id": "r", "sources": [{"type": "file", "channels": [0, 1], "source": str(tmp_path / "st.wav")}],
           "sampling_rate": 16000, "num_samples": 16000, "duration": 1.0, "channel_ids": [0, 1]}
    whole = {"id": "c", "start": 0.0, "duration": 1.0, "channel": [0, 1], "supervisions": [], "recording": rec}

    def read(name: str, *lines: object):
        path = tmp_path / name
        path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
        return read_manifest(path)

    assert len(read("ok_cuts.jsonl", whole)) == 1  # every channel: what cssl reads (mixed)
    with pytest.raises(ManifestError, match=r"one_cuts.jsonl:2: cut c selects channel\(s\) \[1\] of a 2-channel"):
        read("one_cuts.jsonl", whole, {**whole, "channel": 1})
    with pytest.raises(ManifestError, match=r"vol_cuts.jsonl:1: cut c: the recording has transforms \['Volume'\]"):
        read("vol_cuts.jsonl", {**whole, "recording": {**rec, "transforms": [{"name": "Volume", "kwargs": {"factor": 2}}]}})
    with pytest.raises(ManifestError, match=r"list_cuts.jsonl:2: a JSON list, not a cut"):
        read("list_cuts.jsonl", whole, [whole])
    with pytest.raises(ManifestError, match=r"dur_cuts.jsonl:1: cut c lacks the cut.s duration"):
        read("dur_cuts.jsonl", {k: v for k, v in whole.items() if k != "duration"})
    with pytest.raises(ManifestError, match=r"bad_cuts.jsonl:2: not a JSON object"):
        read("bad_cuts.jsonl", whole, '{"id": "x", "recording": ')
