"""Recipe names resolve to the chains of steps they promise, and every registered step type is a
typed, documented config that YAML recipes can name."""

import dataclasses

import pytest

from echolite.compress.base import _HANDLERS
from echolite.compress.recipes import parse_method, parse_steps
from echolite.config import load_config
from echolite.typed import doc

NAMES = {  # name -> (step key, the fields that differ from its defaults), written out by hand
    "static-int8-ort": [("ort_static", {"runtime": "onnxruntime"})],
    "static-int8-ov": [("ort_static", {"runtime": "openvino"})],
    "static-int8-ort-fallback": [("ort_static", {"fallback": True})],
    "fp32-openvino": [("onnxruntime", {"runtime": "openvino"})],
    "fp32-onnxruntime": [("onnxruntime", {"runtime": "onnxruntime"})],
    "dynamic-int8": [("dynamic_ptq", {})],
    "qat-int8": [("qat", {})],
    "unstructured80-gradual-int8": [("unstructured_prune", {"sparsity": 0.8, "gradual_epochs": 2}),
                                    ("static_ptq", {})],
    "structured25-taylor-ft-qat": [("structured_prune", {"ratio": 0.25, "importance": "taylor"}),
                                   ("finetune", {}), ("qat", {})],
    "structured50-ft-int8-ov": [("structured_prune", {"ratio": 0.5}), ("finetune", {}),
                                ("ort_static", {"runtime": "openvino"})],
    "structured50-ft-int8-ort": [("structured_prune", {"ratio": 0.5}), ("finetune", {}),
                                 ("ort_static", {"runtime": "onnxruntime"})],
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_a_recipe_name_is_the_chain_it_promises(name):
    cc = load_config("smoke").compress
    steps = parse_method(name, cc).steps
    assert [s.key for s in steps] == [key for key, _ in NAMES[name]]
    for step, (_, fields) in zip(steps, NAMES[name]):
        for field, value in fields.items():
            assert getattr(step, field) == value, (name, step.key, field)


@pytest.mark.parametrize("step_type", sorted(_HANDLERS, key=lambda t: t.key), ids=lambda t: t.key)
def test_every_step_type_is_a_documented_typed_config_a_yaml_recipe_can_name(step_type):
    assert dataclasses.is_dataclass(step_type) and step_type.__doc__
    for f in dataclasses.fields(step_type):  # every field says what it does
        assert doc(f).strip(), f"{step_type.key}.{f.name} has no doc"
    (step,) = parse_steps("mine", [step_type.key])  # by name alone, with its defaults
    assert type(step) is step_type and step == step_type()
