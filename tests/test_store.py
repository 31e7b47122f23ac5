import pytest
import torch

from echolite.store import Store, digest, tensors_digest


def test_keys_follow_the_inputs_exactly(tmp_path):
    store = Store(tmp_path)
    a = store.entry("stage", "x", {"weights": "abc", "step": {"observer": "minmax", "per_channel": True}})
    b = store.entry("stage", "x", {"step": {"per_channel": True, "observer": "minmax"}, "weights": "abc"})
    c = store.entry("stage", "x", {"weights": "abd", "step": {"observer": "minmax", "per_channel": True}})
    assert a.key == b.key != c.key
    assert store.entry("onnx", "x", a.inputs).key != a.key  # the kind is part of the key


def test_an_interrupted_build_leaves_nothing_that_looks_finished(tmp_path):
    entry = Store(tmp_path).entry("stage", "x", {"n": 1})
    with pytest.raises(RuntimeError), entry.build() as tmp:
        (tmp / "model.pt2").write_bytes(b"half")
        raise RuntimeError("killed")
    assert not entry.complete and not entry.path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder either
    with entry.build() as tmp:
        (tmp / "model.pt2").write_bytes(b"whole")
    assert entry.complete and (entry.path / "model.pt2").read_bytes() == b"whole"


def test_a_miss_says_what_changed(tmp_path):
    store = Store(tmp_path)
    with store.entry("baseline", "baseline", {"data_key": "aaa", "train": {"lr": 0.001}}).build():
        pass
    miss = store.entry("baseline", "baseline", {"data_key": "bbb", "train": {"lr": 0.001}})
    assert miss.describe_miss() == 'changed: data_key "aaa" -> "bbb"'
    assert store.entry("stage", "other", {}).describe_miss() == "nothing built before"


def test_tensor_digest_sees_one_element_and_the_dtype():
    w = torch.arange(12.0).reshape(3, 4)
    d = tensors_digest({"w": w})
    v = w.clone()
    v[2, 3] += 1e-6
    assert tensors_digest({"w": v}) != d
    assert tensors_digest({"w": w.double()}) != d
    assert tensors_digest({"v": w}) != d
    assert tensors_digest({"w": w.clone()}) == d
    assert digest({"a": [1, 2]}) != digest({"a": [2, 1]})
