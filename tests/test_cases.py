"""Cases as packages: discovery, plugins through entry points, a light command line, shipped
models on a user's file, strict recipes, and weights that install with a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import toy_lhc_arrays, write_benchmark

import modelzoo
from modelzoo import manifest, pretrained, registry, training

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _run(args: list[str], env: dict | None = None, cwd: Path | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_every_builtin_case_is_one_folder_and_the_core_never_names_one():
    found = registry.cases()
    assert {"lhc", "galaxy"} <= set(found)
    core = [p for p in (REPO / "modelzoo").glob("*.py")]
    for case in found.values():
        folder = case.folder()
        assert folder.parent == REPO / "modelzoo"
        for spec in case.models:
            assert spec.case == case.name
            assert Path(spec.recipe).parent == folder / "recipes" and Path(spec.recipe).exists()
            assert spec.function().__module__.startswith(case.package)
        for target in case.tasks.values():
            assert target.startswith(case.package)
        for module in core:  # the core finds cases; it never imports one by name
            text = module.read_text()
            assert f"modelzoo.{case.name}" not in text, (module.name, case.name)
            assert f"from modelzoo import {case.name}" not in text, (module.name, case.name)


@pytest.mark.slow
def test_listing_and_help_import_no_deep_learning_framework():
    # `data dayabay`: one case's generator options, without importing another case's (a
    # generator subprocess is started by many tests and by every user's data command).
    probe = ("import sys, modelzoo; modelzoo.list_models(); modelzoo.get_spec('lhc_cnn'); "
             "from modelzoo import cli; cli.build_parser(['--help']); "
             "cli.build_parser(['data', 'dayabay', '--output', 'x.h5']).parse_args("
             "['data', 'dayabay', '--output', 'x.h5', '--ibd', '3']); "
             "print(sorted(m for m in ('tensorflow', 'keras', 'galsim', 'pythia8mc') "
             "if m in sys.modules))")
    out = _run([PYTHON, "-c", probe])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_no_cuda_notes_on_a_machine_without_a_gpu():
    out = _run([PYTHON, "-c", "import modelzoo; modelzoo.get('lhc_cnn', filters=4)"],
               env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert out.returncode == 0, out.stderr
    for noise in ("cuInit", "Could not find cuda drivers", "absl::InitializeLog"):
        assert noise not in out.stderr


def test_misspelled_recipe_key_stops_with_the_valid_keys(tmp_path, capsys):
    with pytest.raises(modelzoo.ConfigError, match=r"no key 'epocs'.*Did you mean train\.epochs"):
        training.apply_overrides(training.load_recipe("lhc_cnn"), {"train.epocs": 3})
    with pytest.raises(modelzoo.ConfigError, match="no section 'trian'"):
        training.apply_overrides(training.load_recipe("lhc_cnn"), {"trian.epochs": 3})
    from modelzoo.cli import main

    data = write_benchmark(tmp_path / "toy.h5", toy_lhc_arrays(n=32, size=8))
    assert main(["train", "lhc_cnn", "--data", data, "--set", "train.epocs=3",
                 "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.epochs" in err and "train.batch_size" in err
    assert not (tmp_path / "run").exists()


def test_a_bug_keeps_its_traceback(monkeypatch):
    from modelzoo import cli

    def broken(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(cli, "_cmd_list", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["list"])


def _swap_two_same_shape_arrays(path: Path) -> tuple[str, str]:
    with h5py.File(path, "r+") as f:
        by_shape: dict = {}
        names = []
        f["weights"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset)
                                else None)
        for name in names:
            by_shape.setdefault(f["weights"][name].shape, []).append(name)
        a, b = next(v for v in by_shape.values() if len(v) >= 2)[:2]
        da, db = f["weights"][a], f["weights"][b]
        first = da[()]
        da[...] = db[()]
        db[...] = first
    return a, b


TINY_16 = {"input_shape": (16, 16, 3), "filters": 4, "dense_units": 8}


def test_weights_are_assigned_by_path_and_an_edited_file_is_refused(tmp_path):
    model = modelzoo.get("lhc_cnn", input_shape=(16, 16, 3), filters=4, dense_units=8)
    path = tmp_path / "tiny.float16.h5"
    pretrained.write_compact(model, path)
    fresh = modelzoo.get("lhc_cnn", **TINY_16, weights=path)
    for a, b in zip(model.weights, fresh.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)

    swapped = tmp_path / "swapped.float16.h5"
    swapped.write_bytes(path.read_bytes())
    a, b = _swap_two_same_shape_arrays(swapped)
    with pytest.raises(modelzoo.PretrainedError, match="checksum"):
        modelzoo.get("lhc_cnn", **TINY_16, weights=swapped)

    renamed = tmp_path / "renamed.float16.h5"
    renamed.write_bytes(path.read_bytes())
    with h5py.File(renamed, "r+") as f:
        f["weights"].move("fc/kernel", "fc/kernel_renamed")
    with pytest.raises(modelzoo.PretrainedError, match="missing fc/kernel.*unexpected "
                       "fc/kernel_renamed"):
        modelzoo.get("lhc_cnn", **TINY_16, weights=renamed)

    reordered = tmp_path / "reordered.float16.h5"
    reordered.write_bytes(path.read_bytes())
    with h5py.File(reordered, "r+") as f:
        f["weights"]["fc/kernel"].attrs["position"] = 0
    with pytest.raises(modelzoo.PretrainedError, match="reordered"):
        modelzoo.get("lhc_cnn", **TINY_16, weights=reordered)
    # The zoo's own format is not named like Keras' own.
    assert all(entry["file"].endswith(pretrained.COMPACT_SUFFIX)
               for entry in manifest.load_manifest().values())


def test_get_accepts_a_tag_a_file_and_a_run_folder(tmp_path):
    data = write_benchmark(tmp_path / "toy.h5", toy_lhc_arrays(n=64, size=8))
    config = {"input_shape": [8, 8, 3], "filters": 4, "dense_units": 8}
    result = training.train("lhc_cnn", data, run_dir=str(tmp_path / "run"),
                            overrides={"train.epochs": 1, "train.batch_size": 16},
                            model_config=config, verbose=0)
    from_run = modelzoo.get("lhc_cnn", weights=result.run_dir)
    from_file = modelzoo.get("lhc_cnn", weights=tmp_path / "run" / "model.weights.h5", **config)
    for a, b, c in zip(result.model.weights, from_run.weights, from_file.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(modelzoo.PretrainedError, match="not 'galaxy_vae'"):
        modelzoo.get("galaxy_vae", weights=result.run_dir)
    with pytest.raises(modelzoo.PretrainedError, match="no such weights file"):
        modelzoo.get("lhc_cnn", weights=str(tmp_path / "nope.h5"))


def test_predict_writes_scores_in_the_input_row_order(tmp_path):
    from modelzoo.cli import main

    arrays = toy_lhc_arrays(n=40, size=8)
    data = write_benchmark(tmp_path / "toy.h5", arrays)
    config = {"input_shape": [8, 8, 3], "filters": 4, "dense_units": 8}
    run = training.train("lhc_cnn", data, run_dir=str(tmp_path / "run"),
                         overrides={"train.epochs": 1, "train.batch_size": 8},
                         model_config=config, verbose=0)
    out = tmp_path / "scores.h5"
    assert main(["predict", "lhc_cnn", "--weights", run.run_dir, "--data", data,
                 "--output", str(out)]) == 0
    images = np.transpose(arrays["data"], (0, 2, 3, 1))  # as stored: the model applies log1p
    expected = run.model.predict(images, verbose=0)[:, 1]
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["signal_score"][()], expected, rtol=1e-5, atol=1e-6)
        assert f.attrs["model"] == "lhc_cnn"
    assert main(["evaluate", "lhc_cnn", "--weights", run.run_dir, "--data", data,
                 "--output", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["events"] == 40 and metrics["signal_events"] == 20


TOY_CASE = '''
"""A toy case outside the zoo: a linear classifier of 4 numbers."""
from modelzoo.registry import Case, ModelSpec

CASE = Case(
    name="toycase", title="A plugin case", package=__name__,
    models=(ModelSpec(name="toy_linear", builder="toycase.models:toy_linear",
                      summary="Logistic regression on 4 features.", domain="testing",
                      problem="classification", recipe="toy_linear.yaml"),),
    tasks={"toy_classification": "toycase.task:ToyClassification"},
    data_command="toycase.generator", generator="toycase.generator:generate",
)
'''
TOY_MODELS = '''
import keras

def toy_linear(features: int = 4) -> keras.Model:
    x = keras.Input((features,))
    return keras.Model(x, keras.layers.Dense(2, activation="softmax", name="linear")(x))
'''
TOY_TASK = '''
from modelzoo.hdf5 import Field, H5Source
from modelzoo.tasks import Task, split_rows, split_streams

class ToyClassification(Task):
    def datasets(self, path, data_cfg, batch_size, group, seed, first_epoch):
        source = H5Source(path, [Field("x", "x", (4,)), Field("y", "y", (), kind="int")])
        train_rows, val_rows = split_rows(source.num_rows, data_cfg["val_fraction"])
        return split_streams(source, lambda b: (b["x"].astype("float32"), b["y"]),
                             train_rows, val_rows, batch_size=batch_size, group=group,
                             seed=seed, first_epoch=first_epoch, shuffle=True, path=path,
                             noun="rows")

    def compile(self, model, optimizer, cfg):
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])

    def evaluate(self, model, path, data_cfg, split, output_dir, group):
        return {}
'''
TOY_GENERATOR = '''
import h5py
import numpy as np

def generate(path, progress=False, n=256, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    with h5py.File(path, "w") as f:
        f["x"] = rng.normal(size=(n, 4)) + 2.0 * y[:, None]
        f["y"] = y

def add_arguments(parser):
    parser.add_argument("--output", required=True)
    parser.add_argument("--count", type=int, default=256)

def run(args):
    generate(args.output, n=args.count)
'''
TOY_RECIPE = '''
task: toy_classification
model: {config: {}}
data: {val_fraction: 0.25}
optimizer: {name: adam, learning_rate: 0.05}
lr_schedule: {base_batch_size: 32}
train: {batch_size: 32, epochs: 1}
'''


@pytest.mark.slow
def test_a_plugin_case_registers_through_its_entry_point_and_trains(tmp_path):
    site = tmp_path / "site"
    package = site / "toycase"
    (package / "recipes").mkdir(parents=True)
    for name, text in {"__init__.py": TOY_CASE, "models.py": TOY_MODELS, "task.py": TOY_TASK,
                       "generator.py": TOY_GENERATOR,
                       "recipes/toy_linear.yaml": TOY_RECIPE}.items():
        (package / name).write_text(textwrap.dedent(text))
    info = site / "toycase-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toycase\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[modelzoo.cases]\ntoycase = toycase:CASE\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    cli = [PYTHON, "-m", "modelzoo.cli"]

    listed = _run(cli + ["list", "toy*"], env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:3] == ["toy_linear", "testing", "classification"]
    info_out = _run(cli + ["info", "toy_linear"], env=env)
    assert "case: toycase" in info_out.stdout and "features: 4" in info_out.stdout
    made = _run(cli + ["data", "toycase", "--output", str(tmp_path / "toy.h5"),
                       "--count", "1024"], env=env)
    assert made.returncode == 0, made.stderr
    trained = _run(cli + ["train", "toy_linear", "--data", str(tmp_path / "toy.h5"),
                          "--output", str(tmp_path / "run"), "--verbose", "0"], env=env)
    assert trained.returncode == 0, trained.stderr
    assert "epochs 0->1" in trained.stdout
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    columns = dict(zip(history[0].split(","), history[1].split(","), strict=True))
    assert len(history) == 2 and float(columns["val_accuracy"]) > 0.75  # chance: 0.5


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_loads_every_default_entry(tmp_path):
    """Build a wheel of this checkout, install it into a fresh venv that sees this one's
    libraries (TensorFlow, ...) but not its editable modelzoo, and load every shipped default
    from a directory outside the repository."""
    wheels = tmp_path / "wheels"
    built = _run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                  "-w", str(wheels), str(REPO)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    venv = tmp_path / "venv"
    made = _run([PYTHON, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    import sysconfig

    own = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                     "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # A plain path line: this venv's libraries, without running its .pth files (one of them is
    # the editable install of the checkout, which must not shadow the wheel).
    (own / "parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("modelzoo-*.whl"))
    installed = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q",
                      "--ignore-installed", str(wheel)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    probe = textwrap.dedent("""
        import json, modelzoo, modelzoo.manifest as p
        import os
        package = os.path.dirname(modelzoo.__file__)
        assert str(p.PRETRAINED_DIR).startswith(package), (package, p.PRETRAINED_DIR)
        names = sorted({e["model"] for e in p.load_manifest().values()})
        for name in names:
            modelzoo.get(name, weights="default")
        print(json.dumps(names))
    """)
    out = _run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path,
               env={"PYTHONPATH": "", "MODELZOO_PRETRAINED_DIR": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == sorted(
        {e["model"] for e in manifest.load_manifest().values()})


def test_layers_that_derive_state_from_their_variables_rebuild_it_on_loading(tmp_path):
    import keras

    def normalized(data):
        inputs = keras.Input((3,))
        norm = keras.layers.Normalization(name="norm")
        norm.adapt(data)
        return keras.Model(inputs, keras.layers.Dense(1, name="out")(norm(inputs)))

    trained = normalized(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    pretrained.write_compact(trained, tmp_path / "norm.float16.h5")
    fresh = normalized(np.zeros((2, 3)))
    pretrained._load_into(fresh, tmp_path / "norm.float16.h5")  # a model built by hand
    np.testing.assert_allclose(np.asarray(fresh.get_layer("norm").mean), [[2.0, 3.0, 4.0]])
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), trained.predict(x, verbose=0),
                               rtol=1e-2)


@pytest.mark.slow
def test_make_demo_runs_end_to_end(tmp_path):
    """The README's first command, as written, on fewer events."""
    demo = tmp_path / "demo"
    out = _run(["make", "demo", f"DEMO={demo}", "DEMO_EVENTS=100"], cwd=REPO, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert f"demo outputs: {demo}/shipped" in out.stdout
    metrics = json.loads((demo / "shipped" / "metrics.json").read_text())
    assert metrics["events"] == 200 and metrics["signal_events"] == 100
    assert metrics["auc_weighted"] > 0.9
    # 100 background events cannot fix the selection's FPR (~3e-6): refused, with the count.
    assert "operating point needs at least 10" in metrics["operating_point_refused"]
    assert (demo / "shipped" / "roc.png").stat().st_size > 0
    assert (demo / "lhc_cnn" / "model.weights.h5").exists()
    with h5py.File(demo / "scores.h5") as f:
        assert f["signal_score"].shape == (200,)
