"""The engine on a task it was never written for (tests/toy_task.py), failures, recipes and reuse."""

import dataclasses
import json
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from toy_task import ToyTask, toy_config

from echolite import EcholiteError, pipeline
from echolite.compress import OnnxRuntimeConfig, StaticPTQConfig, apply
from echolite.compress.base import _HANDLERS, Context, Stage, StepConfig, register, save_weights
from echolite.compress.recipes import Recipe, build, reference_stage
from echolite.compress.runners import load_module, open_runner
from echolite.config import from_dict
from echolite.pipeline import run
from echolite.store import Store
from echolite.tasks import register_task, unregister_task

ENGINE_SOURCES = ["compress", "measure", "benchmark.py", "bench.py", "report.py", "results.py", "train.py",
                  "store.py", "identity.py", "typed.py", "env.py", "task_context.py", "pipeline.py",
                  "metrics/bootstrap.py", "tasks/base.py", "search.py"]


@pytest.fixture(autouse=True, scope="module")
def toy():
    register_task("toy", ToyTask)
    yield
    unregister_task("toy")


def test_engine_sources_contain_no_task_words():
    root = Path(__import__("echolite").__file__).parent
    files = [p for s in ENGINE_SOURCES
             for p in ([root / s] if (root / s).is_file() else (root / s).rglob("*.py"))]
    assert len(files) > 10
    for path in files:
        text = path.read_text()
        hits = re.findall(r"\b(ef|EF|mae|MAE|clips|echo(?!lite)\w*|ejection)\b", text)
        assert not hits, (path.name, hits)


def test_second_task_runs_through_training_measuring_loop_and_report(tmp_path):
    cfg = toy_config("compress.methods=[fp32-onnxruntime, static-int8, static-int8-ort-fallback]")
    results = run(cfg, tmp_path / "run", torch.device("cpu"))
    rows = {r["name"]: r for r in results["rows"]}
    assert [r["status"] for r in results["rows"]] == ["ok"] * 4, [r["error"] for r in results["rows"]]
    fp32 = rows["fp32"]["metrics"]["values"]["accuracy"]
    assert fp32["value"] >= 0.9 and fp32["ci_low"] <= fp32["value"] <= fp32["ci_high"]
    assert rows["static-int8"]["details"]["steps"][0]["quantized_ops"]["conv_int8"] == 2
    assert rows["static-int8"]["details"]["runtime"]["int8_kernels"]["qconv"] == 2  # measured row
    assert rows["static-int8-ort-fallback"]["details"]["steps"][0]["sensitivity"]["layers"][0]["layer"] \
        in {"features.0", "features.3", "head"}  # module names, not ONNX node ids
    onnx = rows["fp32-onnxruntime"]
    assert onnx["metrics"]["paired_delta"]["accuracy"]["value"] == 0.0
    assert onnx["details"]["vs_reference"]["agreement"] == 1.0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "accuracy" in report and "image" in report and "MAE" not in report
    assert results["task"]["name"] == "toy" and results["measure"]["eval"]["n"] == 30
    assert {p.name for p in (tmp_path / "run").glob("*.png")} == {"pareto.png", "sensitivity.png"}


@dataclasses.dataclass(frozen=True)
class ExplodeConfig(StepConfig):
    key: ClassVar[str] = "explode"
    method: ClassVar[str] = "explode"
    family: ClassVar[str] = "quantization"


@pytest.fixture
def explode():
    @register(ExplodeConfig)
    def _explode(stage, cfg, ctx):
        raise RuntimeError("boom in the step")

    yield
    _HANDLERS.pop(ExplodeConfig)


def test_a_failing_step_is_a_failed_row_the_run_continues_and_it_is_retried(tmp_path, explode, caplog):
    cfg = toy_config("compress.methods=[bad, static-int8]", recipes={"bad": ["explode"]})
    results = run(cfg, tmp_path / "run", torch.device("cpu"))
    bad, good = results["rows"][1:]
    assert (bad["name"], bad["status"], bad["phase"]) == ("bad", "failed", "build")
    assert bad["error"].startswith("step 1 (explode): RuntimeError: boom in the step")
    assert good["status"] == "ok"
    assert "`bad` (build): step 1 (explode)" in (tmp_path / "run" / "report.md").read_text()
    caplog.clear()
    run(cfg, tmp_path / "run", torch.device("cpu"))  # the failure is not cached: it is retried
    assert "bad: step 1/1 explode(): building" in caplog.text
    assert "static-int8: step 1/1 static_ptq(): reusing" in caplog.text


def test_failure_handler_cannot_raise():
    from echolite.results import failed_row

    class Nasty(Exception):
        def __str__(self):
            raise ValueError("str() itself fails")

    row = failed_row("x", "quantization", Nasty(), "build")
    assert row["status"] == "failed" and row["error"] == "Nasty"


def _toy_context(tmp_path, task):
    calib = task.calibration_inputs(8, "TRAIN")
    return Context(example_input=task.example_input(), calibration=lambda: iter(calib),
                   work_dir=tmp_path, input_name="images",
                   model_factory=lambda overrides=None: task.build_model(task.cfg),
                   store=Store(tmp_path / "store"), threads=2)


def test_a_recipe_of_two_steps_equals_the_steps_by_hand_and_shares_its_prefix(tmp_path):
    cfg = toy_config()
    task = ToyTask(cfg, ToyTask.prepare(cfg, tmp_path, None))
    torch.manual_seed(0)
    model = task.build_model(cfg).eval()
    ctx = _toy_context(tmp_path, task)
    store = ctx.store
    base, key = reference_stage(model, store, ctx)

    def reload(stage):
        return load_module(stage, ctx.model_factory)

    one = Recipe("int8", (StaticPTQConfig(),))
    two = Recipe("int8-ort", (StaticPTQConfig(), OnnxRuntimeConfig()))
    built_one, info_one = build(one, base, key, ctx, store, reload)
    built_two, info_two = build(two, base, key, ctx, store, reload)
    assert [s["built"] for s in info_two["steps"]] == [False, True]  # step 1 reused from `int8`
    assert info_two["steps"][0]["store"] == info_one["store"]

    by_hand_dir = tmp_path / "by_hand"
    s1 = apply(StaticPTQConfig(), Stage(model), dataclasses.replace(ctx, work_dir=by_hand_dir / "1"))
    s2 = apply(OnnxRuntimeConfig(), s1, dataclasses.replace(ctx, work_dir=by_hand_dir / "2"))
    x = task.eval_set("TEST").inputs.float()
    a = open_runner(built_two, ctx.model_factory, 2)(x)
    b = open_runner(s2, ctx.model_factory, 2)(x)
    assert torch.equal(a, b) and built_two.precision == s2.precision == "int8"
    assert built_two.methods == ["static-ptq", "onnx-export"]


def test_a_step_that_reads_the_budget_is_rebuilt_when_the_budget_changes(tmp_path):
    """A step whose output depends on the task's budget (NNCF's accuracy control without its own
    max_drop) has the budget in its store key: another budget rebuilds it, the same one reuses it."""
    @dataclasses.dataclass(frozen=True)
    class BudgetProbe(StepConfig):
        key: ClassVar[str] = "budget_probe"
        method: ClassVar[str] = "budget-probe"
        family: ClassVar[str] = "quantization"
        uses_budget: ClassVar[bool] = True

    seen = []

    @register(BudgetProbe)
    def probe(stage, cfg, ctx):
        seen.append(ctx.budget)
        return stage.then(cfg.method, {"budget": list(ctx.budget)},
                          artifacts={"state_dict": save_weights(stage.module, ctx.work_dir)})

    try:
        cfg = toy_config()
        task = ToyTask(cfg, ToyTask.prepare(cfg, tmp_path, None))
        torch.manual_seed(0)
        ctx = _toy_context(tmp_path, task)
        base, key = reference_stage(task.build_model(cfg).eval(), ctx.store, ctx)
        recipe = Recipe("probe", (BudgetProbe(),))
        for budget in ((0.05, True), (0.5, True), (0.05, True), (0.05, False)):
            build(recipe, base, key, dataclasses.replace(ctx, budget=budget), ctx.store,
                  lambda st: load_module(st, ctx.model_factory))
        assert seen == [(0.05, True), (0.5, True), (0.05, False)]  # the third build reused the first
    finally:
        _HANDLERS.pop(BudgetProbe)


def test_other_data_rebuilds_baseline_exports_calibration_and_rows(tmp_path, caplog):
    out = tmp_path / "run"
    methods = "compress.methods=[static-int8-ort]"
    first = run(toy_config(methods), out, torch.device("cpu"))
    before = (out / "results.json").read_text()
    refused = r"holds the results of another run \(baseline.data.seed 0 -> 7; baseline.data_key .*choose another"
    with pytest.raises(EcholiteError, match=refused):
        run(toy_config(methods, "data.seed=7"), out, torch.device("cpu"))  # refused, nothing touched
    assert (out / "results.json").read_text() == before
    caplog.clear()
    second = run(toy_config(methods, "data.seed=7"), tmp_path / "run-seed7", torch.device("cpu"))
    assert re.search(r"baseline: training into \S+ \(changed: .*data_key", caplog.text)
    assert "exporting the float model to ONNX" in caplog.text
    assert "calibrating ONNX Runtime ranges" in caplog.text
    store = tmp_path / "store"  # shared by the run folders beside each other
    for kind in ("baseline", "onnx", "ranges"):
        assert len(list(store.glob(f"{kind}-*"))) == 2, kind  # rebuilt, the first kept
    assert first["rows"][1]["store"] != second["rows"][1]["store"]
    assert first["run"]["data"]["key"] != second["run"]["data"]["key"]
    caplog.clear()
    run(toy_config(methods), tmp_path / "run-again", torch.device("cpu"))  # the first data: all reused
    assert "baseline: reusing" in caplog.text and "building" not in caplog.text


def test_fine_tuning_keeps_the_best_val_epoch_and_can_give_back_the_start(tmp_path):
    """keep_best restores the weights of the best VAL epoch, epoch 0 (as it started) included."""
    from echolite.task_context import finetuner

    cfg = toy_config()
    task = ToyTask(cfg, ToyTask.prepare(cfg, tmp_path, None))
    torch.manual_seed(0)
    model = task.build_model(cfg)
    finetuner(task, torch.device("cpu"))(model, 4, 0.01)  # a model that learned something
    start = {k: v.clone() for k, v in model.state_dict().items()}
    history = finetuner(task, torch.device("cpu"))(model, 1, 5.0, keep_best=True)  # lr 5: ruinous
    assert history[0]["epoch"] == 0 and history[1]["val_score"] < history[0]["val_score"]
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())  # given back
    finetuner(task, torch.device("cpu"))(model, 1, 5.0, keep_best=False)
    assert not all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_of_tied_val_epochs_the_later_is_kept_and_a_nan_never_is(tmp_path, monkeypatch):
    """A VAL set that saturates (every epoch 100 %) must not keep the start or an early epoch: the
    digits baseline kept its epoch 2 of 40 that way (TEST 93.3 % instead of 98 %). A NaN score is
    never the best; all NaN is an error."""
    from echolite.train import Schedule, fit

    cfg = toy_config()
    task = ToyTask(cfg, ToyTask.prepare(cfg, tmp_path, None))
    torch.manual_seed(0)
    model = task.build_model(cfg)
    scores = iter([1.0, 1.0, 1.0, 1.0])  # the start and three epochs, all tied
    monkeypatch.setattr(task, "val_score", lambda *args, **kwargs: next(scores))
    result = fit(task, model, Schedule(0.01, 3, 0.0, "cosine"), torch.device("cpu"), score_start=True)
    assert result.best_epoch == 3
    hib = task.metric(task.PRIMARY).higher_is_better
    scores = iter([1.0, 2.0, float("nan")] if hib else [2.0, 1.0, float("nan")])
    result = fit(task, model, Schedule(0.01, 2, 0.0, "cosine"), torch.device("cpu"), score_start=True)
    assert result.best_epoch == 1 and result.best_score == (2.0 if hib else 1.0)
    monkeypatch.setattr(task, "val_score", lambda *args, **kwargs: float("nan"))
    with pytest.raises(EcholiteError, match="no epoch reached a finite VAL"):
        fit(task, model, Schedule(0.01, 1, 0.0, "cosine"), torch.device("cpu"))


@pytest.mark.parametrize("methods, message", [
    (["static-int8-minmaxx"], "unknown method 'static-int8-minmaxx' (known: fp32-inductor"),
    (["statik-int8"], "unknown method 'statik-int8'"),
    (["static-int8", "static-int8"], "listed twice"),
    (["mine"], "compress.methods: mine: step 2 (static_ptq) follows a runtime step (onnxruntime)"),
    (["typo"], "step 1: unknown step 'static_ptqq' (known:"),
    (["badfield"], "step 1 (static_ptq): unknown field(s) observr"),
    (["badvalue"], "observer must be one of"),
    (["twice"], "needs a float model, but step 1 (static_ptq) quantized it"),
    (["not-a-list"], "keep_fp32 must be list of names, but got 5"),
    (["bool"], "freeze_bn must be true|false, but got 'no'"),
    (["int"], "epochs must be integer, but got 2.5"),
    (["scalar"], "step 1 (static_ptq): expected {field: value}, got 5"),
])
def test_every_method_entry_is_validated_when_the_config_loads(methods, message):
    raw = {"task": "toy", "compress": {"methods": methods, "recipes": {
        "mine": ["onnxruntime", "static_ptq"], "typo": ["static_ptqq"],
        "badfield": [{"static_ptq": {"observr": "minmax"}}],
        "badvalue": [{"static_ptq": {"observer": "max"}}], "twice": ["static_ptq", "qat"],
        "not-a-list": [{"static_ptq": {"keep_fp32": 5}}], "bool": [{"qat": {"freeze_bn": "no"}}],
        "int": [{"qat": {"epochs": 2.5}}], "scalar": [{"static_ptq": 5}]}}}
    with pytest.raises(EcholiteError, match=re.escape(message)):
        from_dict(raw)


def test_yaml_recipes_parse_with_fields():
    raw = {"task": "toy", "compress": {"methods": ["mine", "text"], "recipes": {
        "mine": [{"static_ptq": {"observer": "histogram", "keep_fp32": ["head"]}}, "onnxruntime"],
        "text": [{"static_ptq": {"keep_fp32": "head, features.0"}}]}}}  # the one rule: text lists split on ","
    mine, text = from_dict(raw).recipes()
    assert mine.steps == (StaticPTQConfig(observer="histogram", keep_fp32=("head",)), OnnxRuntimeConfig())
    assert mine.family == "quantization"
    assert text.steps == (StaticPTQConfig(keep_fp32=("head", "features.0")),)


def test_results_json_is_plain_json_and_report_regenerates(tmp_path):
    from echolite.report import write_report

    run(toy_config("compress.methods=[static-int8]"), tmp_path / "run", torch.device("cpu"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    (tmp_path / "run" / "report.md").unlink()
    write_report(tmp_path / "run")
    assert "static-int8" in (tmp_path / "run" / "report.md").read_text()
    assert np.isfinite(results["rows"][1]["latency_ms"]["p50"])


def test_device_rows_carry_their_device_and_say_what_is_not_available(tmp_path, monkeypatch):
    """The accelerator rows' code path, run on the CPU here (no GPU on this machine)."""
    from echolite import benchmark
    from echolite.metrics.bootstrap import resample_indices
    from echolite.report import device_table
    from echolite.results import ok_rows
    from echolite.tasks.base import model_runner, predict_outputs

    cfg = toy_config()
    task = ToyTask(cfg, ToyTask.prepare(cfg, tmp_path, None))
    model = task.build_model(cfg).eval()
    evalset = task.eval_set("TEST")
    ref = task.decode(predict_outputs(model_runner(model), evalset, 8))
    monkeypatch.setattr(benchmark, "_ort_providers", lambda: ["CPUExecutionProvider"])
    rows = benchmark.device_rows(task, model, torch.device("cpu"), evalset, resample_indices(30, 20, 0),
                                 cfg.measure, task.example_input(), ref)
    assert [r["name"] for r in rows] == ["cpu-fp32", "cpu-bf16", "cpu-fp32-compile", "cpu-int8-tensorrt"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "unavailable"]
    assert "no TensorrtExecutionProvider" in rows[-1]["error"]
    assert all(r["device"].startswith("cpu: ") and r["family"] == "device" for r in rows)
    assert rows[0]["metrics"]["paired_delta"]["accuracy"]["value"] == 0.0
    results = {"rows": rows, "task": {"primary": "accuracy", "item": "image", "metrics": [
        {"key": "accuracy", "label": "accuracy", "fmt": ".3f", "higher_is_better": True}]},
               "measure": {"throughput_batch": 4}}
    table = "\n".join(device_table(results))
    assert "| cpu-fp32 | fp32 | torch-cpu |" in table and "1.00×" in table and "**unavailable**" in table
    assert ok_rows(results) == []  # never mixed into the reference device's rows


def test_a_folder_keeps_one_run_and_a_remeasure_drops_what_it_no_longer_backs(tmp_path):
    """Issue 16: another run's settings (compress, eval, measure too) are refused before any work;
    re-measuring the same run removes files the new results do not back (an older bench.json)."""
    out = tmp_path / "run"
    run(toy_config("compress.methods=[static-int8]"), out, torch.device("cpu"))
    before = (out / "results.json").read_text()
    for change in ("compress.methods=[static-int8-ort]", "eval.split=VAL", "measure.threads=1"):
        with pytest.raises(EcholiteError, match=r"holds the results of another run \((compress|eval|measure)\."):
            run(toy_config("compress.methods=[static-int8]", change), out, torch.device("cpu"))
    assert (out / "results.json").read_text() == before
    (out / "bench.json").write_text("{}")  # re-timed the artifacts of the earlier results
    (out / "predictions_val.csv").write_text("stale\n")
    run(toy_config("compress.methods=[static-int8]"), out, torch.device("cpu"))
    assert not (out / "bench.json").exists() and not (out / "predictions_val.csv").exists()
    assert (out / "predictions_test.csv").is_file()


def test_building_runs_on_the_process_threads_and_only_timing_is_pinned(tmp_path, monkeypatch):
    """Issue 16: QAT, fine-tuning and calibration ran on measure.threads (2 on a 64-core box)."""
    from echolite import benchmark

    seen = {}
    real_fit = benchmark.compression_context

    def spy(task, store, device, amp=None):
        ctx = real_fit(task, store, device, amp)
        inner = ctx.finetune

        def finetune(*args, **kwargs):
            seen["finetune"] = torch.get_num_threads()
            return inner(*args, **kwargs)

        return dataclasses.replace(ctx, finetune=finetune)

    monkeypatch.setattr(benchmark, "compression_context", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        results = run(toy_config("compress.methods=[unstructured50-ft]", "measure.threads=1",
                                 "compress.finetune_epochs=1"), tmp_path / "run", torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
    assert seen["finetune"] == 3
    assert all(r["latency_ms"]["threads"] == 1 for r in results["rows"])


def test_an_onnx_export_of_an_int8_program_with_no_int8_conv_is_refused(tmp_path, monkeypatch):
    """Issue 16: a model with 0 int8 convs was labelled "mixed int8/fp32 (0 of N convs int8)"."""
    from echolite.compress.steps import onnxruntime as step

    monkeypatch.setattr(step, "runtime_details",
                        lambda path, runtime, threads, shape: {"int8_convs": 0, "float_convs": 2})
    results = run(toy_config("compress.methods=[static-int8-onnxruntime]"), tmp_path / "run", torch.device("cpu"))
    row = results["rows"][1]
    assert row["status"] == "failed" and "runs none of the 2 convolutions" in row["error"]


def test_a_real_best_pt_is_refused_before_any_training_and_never_unlinked(tmp_path):
    """Issue 16: a user's own best.pt in a train folder is refused (before training), not replaced
    by echolite's link."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "best.pt").write_bytes(b"my weights")
    task = pipeline.prepare(toy_config("compress.methods=[static-int8]"), mine)
    with pytest.raises(EcholiteError, match="best.pt is a file, not the link echolite writes"):
        pipeline.train(task, mine, torch.device("cpu"))
    assert (mine / "best.pt").read_bytes() == b"my weights"
    assert not list((tmp_path / "store").glob("baseline-*"))  # nothing trained
