"""Students: distillation through the engine's loop and the budgeted search, on the toy task (a task the
engine was never written for). The search must choose without ever reading TEST."""

import json

import numpy as np
import pytest
import torch
from toy_task import ToyTask, toy_config

from echolite import EcholiteError, pipeline
from echolite.compress.recipes import parse_method
from echolite.compress.search.budget import candidate_names, parse_budget
from echolite.config import from_dict, with_model
from echolite.results import choose
from echolite.store import Store
from echolite.task_context import compression_context, finetuner
from echolite.tasks import register_task, unregister_task

CPU = torch.device("cpu")


class ReadOfTest(AssertionError):
    pass


class _NoTest(dict):
    """A data table whose TEST split raises when anything reads it (by key, get, or iteration)."""

    def __getitem__(self, key):
        if key == "TEST":
            raise ReadOfTest("TEST was read")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default  # noqa: SIM401 - the guarded __getitem__

    def values(self):
        raise ReadOfTest("every split was read")

    def items(self):
        raise ReadOfTest("every split was read")


class ToyNoTest(ToyTask):
    NAME = "toy-notest"

    @classmethod
    def prepare(cls, cfg, run_dir, store=None, splits=("TRAIN", "VAL", "TEST")):
        data = super().prepare(cfg, run_dir, store, splits)
        data.table = _NoTest(data.table)
        return data


@pytest.fixture(autouse=True, scope="module")
def toy():
    register_task("toy", ToyTask)
    register_task("toy-notest", ToyNoTest)
    yield
    unregister_task("toy")
    unregister_task("toy-notest")


def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> float:
    """KL(teacher || student) of softened logits, computed by hand (not through the task's loss)."""
    p = torch.softmax(teacher_logits / t, 1)
    return float((p * (p.log() - torch.log_softmax(student_logits / t, 1))).sum(1).mean())


def test_distillation_stores_the_teachers_outputs_and_moves_the_student_towards_it(tmp_path, caplog):
    cfg = toy_config()
    task = ToyTask(cfg, ToyTask.prepare(cfg, tmp_path, None))
    torch.manual_seed(0)
    teacher = task.build_model(cfg)
    finetuner(task, CPU)(teacher, 4, 0.01)
    teacher.eval()
    ctx = compression_context(task, Store(tmp_path / "store"), CPU)
    x = task.data.table["TRAIN"][0].float()
    with torch.no_grad():
        target = teacher(x)  # the teacher's outputs, computed independently
    torch.manual_seed(1)
    student = ctx.student({"arch": "toynet-small"})
    with torch.no_grad():
        before = _kl(student.eval()(x), target, 2.0)
    history, info = ctx.distill(student, teacher, {}, 6, 0.02, 1.0, 2.0)
    stored = torch.load(tmp_path / "store" / info["teacher_outputs"] / "teacher_outputs.pt", weights_only=True)
    assert torch.allclose(stored["outputs"], target, atol=1e-5) and info["teacher_items"] == len(x)
    assert info["kept_val_score"] == max(h["val_score"] for h in history)  # the weights fit kept
    losses = [h["train_loss"] for h in history]
    assert losses[-1] < 0.7 * losses[0]
    with torch.no_grad():
        after = _kl(student.eval()(x), target, 2.0)
    assert after < 0.5 * before
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 4
    caplog.clear()
    ctx.distill(task.build_model(with_model(cfg, {"arch": "toynet-small"})), teacher, {}, 1, 0.02, 0.5, 2.0)
    assert "reusing the teacher's outputs" in caplog.text  # keyed by the teacher's weights: computed once
    _, alone = ctx.distill(task.build_model(with_model(cfg, {"arch": "toynet-small"})), teacher, {}, 1, 0.02, 0.0, 2.0)
    assert "teacher_outputs" not in alone  # alpha 0: the student alone, no teacher
    with torch.no_grad():
        teacher.head.bias.add_(1.0)  # other teacher weights: other outputs, computed again
    caplog.clear()
    _, again = ctx.distill(task.build_model(with_model(cfg, {"arch": "toynet-small"})), teacher, {}, 1, 0.02, 0.5, 2.0)
    assert "computing the teacher's outputs" in caplog.text and again["teacher_outputs"] != info["teacher_outputs"]


def test_student_recipes_expand_to_distill_then_prune_then_runtime():
    cc = toy_config("compress.distill_alpha=0.6", "compress.distill_epochs=3").compress
    r = parse_method("distill-toynet-small-structured30-ft-int8-ov", cc)
    assert [s.key for s in r.steps] == ["distill", "structured_prune", "finetune", "ort_static"]
    d = r.steps[0]
    assert (d.arch, d.alpha, d.epochs, d.frame_size) == ("toynet-small", 0.6, 3, 0) and r.family == "students"
    assert r.steps[1].ratio == 0.3 and r.steps[3].runtime == "openvino"
    alone = parse_method("student-plain-cnn-s56-ort", cc)
    assert (alone.steps[0].arch, alone.steps[0].frame_size, alone.steps[0].alpha) == ("plain-cnn", 56, 0.0)
    with pytest.raises(EcholiteError, match="model.arch must be one of toynet, toynet-small"):
        toy_config("compress.methods=[distill-nonet-int8-ort]")
    with pytest.raises(EcholiteError, match="search: distill-nonet-ort: .*model.arch must be one of"):
        toy_config("search.students=[nonet]", "search.runtimes=[ort]")  # when the config loads, before any work


def test_search_space_budget_and_rule():
    names = candidate_names(["teacher", "a-cnn"], [0, 50], ["int8-ort", "ov"], ["qat-int8", "static-int8-ort"])
    assert names == ["static-int8-ort", "fp32-openvino", "structured50-ft-int8-ort", "structured50-ft-ov",
                     "distill-a-cnn-int8-ort", "distill-a-cnn-ov", "distill-a-cnn-structured50-ft-int8-ort",
                     "distill-a-cnn-structured50-ft-ov", "qat-int8"]
    assert parse_budget("5%", True) == 0.05 and parse_budget("0.5pp", False) == 0.5
    with pytest.raises(EcholiteError, match="did you mean 5%"):
        parse_budget("5", True)
    with pytest.raises(EcholiteError, match="percentage points"):
        parse_budget("5%", False)
    with pytest.raises(EcholiteError, match="relative"):
        parse_budget("1pp", True)
    recs = [{"name": "fast-bad", "p50_ms": 1.0, "size_bytes": 9, "bound": 0.2},
            {"name": "fast-ok", "p50_ms": 2.0, "size_bytes": 8, "bound": 0.04},
            {"name": "small-ok", "p50_ms": 3.0, "size_bytes": 1, "bound": 0.05},
            {"name": "nan", "p50_ms": 0.5, "size_bytes": 1, "bound": None}]
    assert choose(recs, 0.05, "latency")["name"] == "fast-ok"
    assert choose(recs, 0.05, "size")["name"] == "small-ok"
    assert choose(recs, 0.01, "latency") is None


def test_search_chooses_on_val_without_reading_test_then_checks_the_winner_on_test(tmp_path):
    sets = ["search.students=[teacher,toynet-small]", "search.prune=[0]", "search.runtimes=[int8-ort,ort]",
            "compress.distill_epochs=3", "compress.distill_lr=0.02"]
    cfg = from_dict({**toy_config(*sets).to_dict(), "task": "toy-notest"})
    out = tmp_path / "search"
    record = pipeline.search(cfg, out, CPU, budget="0.1", test_check=False)  # TEST raises if read
    assert record["status"] == "done" and record["split"] == "VAL" and record["counts"]["candidates"] == 4
    ok = [c for c in record["candidates"] if c["status"] == "ok"]
    assert len(ok) == 4
    fastest_within = min((c for c in ok if c["bound"] is not None and c["bound"] <= 0.1), key=lambda c: c["p50_ms"])
    assert record["winner"] == fastest_within["name"]
    assert json.loads((out / "search.json").read_text())["winner"] == record["winner"]
    assert (out / "search_front.png").is_file() and "winner" in (out / "search.md").read_text()
    assert record["counts"]["steps_built"] >= 4
    with pytest.raises(ReadOfTest):  # the TEST check is the only reader of TEST, after the choice is written
        pipeline.search(cfg, out, CPU, budget="0.1", test_check=True)
    again = json.loads((out / "search.json").read_text())
    within = {c["name"] for c in again["candidates"] if c["status"] == "ok" and c["bound"] is not None
              and c["bound"] <= 0.1}
    assert again["winner"] in within  # re-timed in this process: the fastest may be another one within
    assert again["counts"]["steps_built"] == 0 and again["counts"]["steps_reused"] >= 6  # nothing rebuilt
    assert np.isfinite([c["p50_ms"] for c in ok]).all()


def test_a_student_frame_size_must_divide_the_input_when_the_config_loads():
    from echolite.config import apply_overrides, load_config

    with pytest.raises(EcholiteError, match="distill-plain-cnn-s48-ort: frame size 48 does not divide data.size=112"):
        apply_overrides(load_config("smoke"), ["compress.methods=[distill-plain-cnn-s48-ort]"])
    cfg = apply_overrides(load_config("smoke"), ["compress.methods=[distill-plain-cnn-s56-ort]"])
    assert cfg.recipes()[0].steps[0].model_overrides() == {"arch": "plain-cnn", "frame_size": 56}
