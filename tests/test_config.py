import pytest

from echolite import EcholiteError
from echolite.config import apply_overrides, load_config, presets


@pytest.mark.parametrize("name", ["smoke", "quick", "full"])
def test_every_shipped_preset_loads(name):
    assert name in presets()
    assert load_config(name).name == name


def test_overrides_are_typed():
    cfg = apply_overrides(load_config("smoke"), ["train.lr=3e-4", "train.epochs=5",
                                                  "model.pretrained=null", "data.root=/x"])
    assert cfg.train.lr == 3e-4 and cfg.train.epochs == 5 and cfg.data.root == "/x"


@pytest.mark.parametrize("item, message", [
    ("train.lrr=1", "unknown config key 'train.lrr'"),
    ("training.lr=1", "unknown config section"),
    ("train.epochs=many", "train.epochs must be int"),
    ("train.schedule=linear", "train.schedule must be cosine or step"),
    ("train.lr", "expected section.field=value"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(EcholiteError, match=message.replace("(", r"\(")):
        apply_overrides(load_config("smoke"), [item])
