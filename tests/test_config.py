import pytest

from echolite import EcholiteError
from echolite.config import apply_overrides, from_dict, load_config, presets


@pytest.mark.parametrize("name", ["smoke", "quick", "full", "prune-sweep", "choose-defaults"])
def test_every_shipped_preset_loads_with_its_recipes(name):
    assert name in presets()
    cfg = load_config(name)
    assert cfg.name == name and cfg.task == "ef"
    assert [r.name for r in cfg.recipes()] == cfg.compress.methods


def test_task_blocks_apply_to_their_task_only():
    cfg = load_config("smoke")
    assert cfg.data.phantom_n == 24  # from the ef: block
    assert cfg.train.epochs == 2 and cfg.compress.calib_items == 4  # shared part


def test_overrides_are_typed():
    cfg = apply_overrides(load_config("smoke"), ["train.lr=3e-4", "train.epochs=5",
                                                  "model.pretrained=null", "data.root=/x"])
    assert cfg.train.lr == 3e-4 and cfg.train.epochs == 5 and cfg.data.root == "/x"


def test_old_boolean_amp_still_reads():
    assert from_dict({"train": {"amp": True}}).train.amp == "auto"
    assert from_dict({"train": {"amp": False}}).train.amp == "off"


@pytest.mark.parametrize("item, message", [
    ("train.lrr=1", "unknown config key 'train.lrr'"),
    ("training.lr=1", "unknown config section"),
    ("train.epochs=many", "train.epochs must be int"),
    ("train.schedule=linear", "train.schedule must be one of cosine, step"),
    ("train.amp=fp8", "train.amp must be one of auto, off, bf16, fp16"),
    ("train.lr", "expected section.field=value"),
    ("task=cifar10", "chosen with --task"),
    ("compress.methods=[static-int8-minmaxx]", "unknown method 'static-int8-minmaxx'"),
    ("data.phantom_version=true", "data.phantom_version must be one of 1, 2, but got True"),  # True == 1
    ("train.lr=.nan", "train.lr must be number, but got nan"),
    ("train.lr=inf", "train.lr must be number, but got 'inf'"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(EcholiteError, match=message.replace("(", r"\(")):
        apply_overrides(load_config("smoke"), [item])


def test_unknown_task_is_one_line():
    with pytest.raises(EcholiteError, match="unknown task 'audio' \\(known: ef"):
        load_config("smoke", task="audio")


def test_an_extending_file_wins_over_the_preset_for_every_task(tmp_path):
    (tmp_path / "mine.yaml").write_text("extends: quick\nname: mine\ntrain:\n  epochs: 3\n")
    for task in ("ef", "cifar10"):  # quick's cifar10 block says 40 epochs: the file's 3 win
        cfg = load_config(str(tmp_path / "mine.yaml"), task=task)
        assert (cfg.name, cfg.task, cfg.train.epochs) == ("mine", task, 3)
    assert load_config("quick", task="cifar10").train.epochs == 40


def test_a_typo_in_another_tasks_block_is_an_error_too(tmp_path):
    (tmp_path / "typo.yaml").write_text("cifar10:\n  model:\n    archh: resnet18-cifar\n")
    with pytest.raises(EcholiteError, match=r"typo.yaml \[cifar10\]: unknown config key 'model.archh'"):
        load_config(str(tmp_path / "typo.yaml"))  # loaded for the ef task
