"""One identity for every artifact: a setting marked as not part of any key changes no key; every
other setting changes exactly the keys it must (issue 16: the hand-kept "made from" filters)."""

import dataclasses
import typing

import pytest
import torch

from echolite import identity
from echolite.config import from_dict
from echolite.identity import baseline_inputs, data_inputs, model_inputs, run_identity
from echolite.store import digest
from echolite.tasks.base import DataRef
from echolite.typed import hints, is_identity

EXAMPLE = (1, 8, 1, 112, 112)


class FakeTask:
    """What the identity functions read of a task: its name, config and data key."""

    def __init__(self, cfg, data_key="d" * 64):
        self.NAME, self.cfg = cfg.task, cfg
        self.data = DataRef(None, None, data_key, {})


def keys(cfg) -> dict:
    task = FakeTask(cfg)
    return {"baseline": digest(baseline_inputs(task, None)),
            "model": digest(model_inputs(task, EXAMPLE, "x")),
            "data": digest(data_inputs(task, "calibration", None)),
            "run": digest(run_identity(task)), "search": digest(run_identity(task, search=True))}


def _other_value(value, hint):
    args = typing.get_args(hint)
    if type(None) in args:  # an optional setting: its non-null type
        hint = next(a for a in args if a is not type(None))
        if value is None:
            return {str: "x", float: 1.5, int: 3}[hint]
    if typing.get_origin(hint) is typing.Literal:
        return next(c for c in typing.get_args(hint) if c != value)
    if hint is bool:
        return not value
    if hint is int:
        return value + 1
    if hint is float:
        return value + 0.25
    if hint is str:
        return f"{value}-other"
    if typing.get_origin(hint) is list or hint is list:
        return [*value, "static-int8-ort"] if "static-int8-ort" not in value else value[:-1]
    if hint is dict or typing.get_origin(hint) is dict:
        return {**value, "mine": ["static_ptq"]}
    raise AssertionError(f"no other value for {hint}")


# which keys a changed setting of each section must change (all others must stay)
MUST_CHANGE = {"data": {"baseline", "model", "run", "search"}, "model": {"baseline", "model", "run", "search"},
               "train": {"baseline", "run", "search"}, "eval": {"run", "search"}, "compress": {"run", "search"},
               "measure": {"run", "search"}, "search": {"search"}}  # a search folder's identity: its space too


# the settings that are NOT in any key, each with why (written here, not read from the code under test)
NOT_IDENTITY = {
    "data.root": "the data key holds the dataset's content, not where it lies",
    "data.num_workers": "how data is read", "data.frame_cache": "how data is read",
    "data.drop_bad_rows": "the rows kept are in the data key",
    "data.phantom_n": "the phantom's content is the data key", "data.phantom_seed": "ditto",
    "data.phantom_version": "ditto",
    "model.pretrained": "the file's bytes are in the baseline key",
    "train.amp": "the precision it resolves to is in the baseline key", "train.device": "where, not what",
}


def test_exactly_the_listed_settings_are_left_out_of_every_key():
    for task in ("ef", "cifar10"):
        cfg = from_dict({"task": task})
        for section in ("data", "model", "train", "eval", "compress", "measure", "search"):
            for f in dataclasses.fields(getattr(cfg, section)):
                assert is_identity(f) == (f"{section}.{f.name}" not in NOT_IDENTITY), f"{task}: {section}.{f.name}"


def _cases():
    for task in ("ef", "cifar10"):
        cfg = from_dict({"task": task})
        for section in ("data", "model", "train", "eval", "compress", "measure", "search"):
            obj = getattr(cfg, section)
            for f in dataclasses.fields(obj):
                yield pytest.param(task, section, f.name, id=f"{task}-{section}.{f.name}")


@pytest.mark.parametrize("task, section, name", list(_cases()))
def test_a_setting_changes_exactly_the_keys_it_must(task, section, name):
    cfg = from_dict({"task": task})
    before = keys(cfg)
    obj = getattr(cfg, section)
    value = getattr(obj, name)
    if name == "pretrained":  # a file's bytes are the identity, not its name
        return
    setattr(obj, name, _other_value(value, hints(type(obj))[name]))
    after = keys(cfg)
    changed = {k for k in before if before[k] != after[k]}
    identity = f"{section}.{name}" not in NOT_IDENTITY
    expected = MUST_CHANGE[section] if identity else set()
    if section == "train" and identity and name not in ("epochs", "lr"):
        expected = expected | {"data"}  # data-dependent steps train with the task's loop (not its epochs, lr)
    assert changed == expected, f"{section}.{name}: changed {sorted(changed)}, expected {sorted(expected)}"


def test_the_data_key_and_the_precision_change_the_baseline(tmp_path):
    cfg = from_dict({"task": "ef"})
    a, b = FakeTask(cfg, "a" * 64), FakeTask(cfg, "b" * 64)
    assert digest(baseline_inputs(a, None)) != digest(baseline_inputs(b, None))
    assert digest(baseline_inputs(a, None)) != digest(baseline_inputs(a, torch.bfloat16))
    weights = tmp_path / "w.pt"
    torch.save({"x": torch.ones(1)}, weights)
    cfg.model.pretrained = str(weights)
    with_file = digest(baseline_inputs(FakeTask(cfg, "a" * 64), None))
    torch.save({"x": torch.zeros(1)}, weights)  # same name, other bytes
    assert digest(baseline_inputs(FakeTask(cfg, "a" * 64), None)) != with_file


def test_editing_the_report_changes_no_code_digest():
    for kind in identity.CODE:
        files = identity.code_files(kind)
        assert not {"report.py", "cli.py", "figures.py", "results.py", "api.py"} & set(files), kind
    assert "compress/steps/static_ptq.py" in identity.code_files("stages")
    assert "train.py" in identity.code_files("baseline") and "data/realism.py" not in identity.code_files("baseline")
    for kind in ("baseline", "stages"):  # a dataset's content is in the data key; its makers are not code of models
        files = identity.code_files(kind)
        assert "data/echonet.py" in files and "data/framecache.py" in files, kind
        assert not [f for f in files if f.startswith("data/phantom/") or f in (
            "data/digits.py", "data/validate.py", "data/fingerprint.py", "data/realism.py")], kind
    assert "data/phantom/scanner.py" in identity.code_files("phantom")
    assert identity.code_files("digits") == ["data/cifar.py", "data/digits.py"]


def test_describe_changes_names_what_changed():
    assert identity.describe_changes({"a": {"b": 1}, "c": 2}, {"a": {"b": 3}, "c": 2}) == ["a.b 1 -> 3"]


def test_a_missing_pretrained_file_is_an_error_not_a_baseline_from_scratch(tmp_path):
    """Keying a missing file as "no weights" would silently reuse the baseline trained from scratch."""
    from types import SimpleNamespace

    from echolite import EcholiteError
    from echolite.config import apply_overrides, load_config
    from echolite.identity import baseline_inputs

    cfg = apply_overrides(load_config("smoke"), [f"model.pretrained={tmp_path / 'gone.pt'}"])
    task = SimpleNamespace(NAME="ef", cfg=cfg, data=SimpleNamespace(key="k"))
    with pytest.raises(EcholiteError, match="gone.pt: no such file"):
        baseline_inputs(task, "off")
    (tmp_path / "gone.pt").write_bytes(b"weights")
    assert baseline_inputs(task, "off")["pretrained"] is not None


def test_every_store_key_is_made_in_identity():
    """No module assembles a key of its own: a store entry's inputs come from an identity function."""
    import re
    from pathlib import Path

    import echolite

    root = Path(echolite.__file__).parent
    inline = [f"{p.relative_to(root)}" for p in root.rglob("*.py")
              if re.search(r"\.entry\(\s*\"[^\"]+\",\s*f?\"[^\"]*\",\s*\{", p.read_text())]
    assert inline == []
