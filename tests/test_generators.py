"""The one generator skeleton (modelzoo/parallel.py) under every ``modelzoo data <case>``: output
folders created, one report type, nothing a reader accepts left behind by a failure or a kill,
the previous complete file kept when the disk fills up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from modelzoo import parallel
from modelzoo.errors import ZooError

# Each case's command with a tiny data set, and its reader.
TINY = {
    "lhc": (["--signal", "2", "--background", "2", "--image-size", "8"],
            "modelzoo.lhc.reader:open_lhc"),
    "galaxy": (["--count", "3", "--image-size", "21"], "modelzoo.galaxy.reader:open_galaxies"),
    "climate": (["images", "--images", "2", "--height", "16", "--width", "24"],
                "modelzoo.climate.reader:open_extreme_weather"),
    "cosmology": (["--maps-per-class", "2", "--npix", "16", "--side-deg", "0.5"],
                  "modelzoo.cosmology.reader:open_mass_maps"),
    "ecog": (["--trials", "4", "--channels", "3", "--samples", "10"],
             "modelzoo.ecog.reader:open_ecog"),
    "dayabay": (["--ibd", "3", "--accidentals", "3"], "modelzoo.dayabay.reader:open_dayabay"),
}
# Sizes that take a few seconds, to be killed midway.
LARGE = {
    "galaxy": ["--count", "4000"],
    "climate": ["images", "--images", "400"],
    "cosmology": ["--maps-per-class", "2000", "--npix", "64"],
    "ecog": ["--trials", "20000"],
    "dayabay": ["--ibd", "200000", "--accidentals", "200000"],
}


def _reader(case: str):
    import importlib

    module, _, function = TINY[case][1].partition(":")
    return getattr(importlib.import_module(module), function)


def _data_command(case: str, output, args: list[str]) -> list[str]:
    if case == "climate":  # the subcommand comes first
        return ["data", case, args[0], "--output", str(output), *args[1:]]
    return ["data", case, "--output", str(output), *args]


@pytest.mark.parametrize("case", list(TINY))
def test_every_generator_creates_its_output_folder_and_returns_one_report(case, tmp_path,
                                                                          capsys):
    from modelzoo import cli

    if case == "lhc":
        pytest.importorskip("pythia8mc")
    output = tmp_path / "new" / "deeper" / "f.h5"
    assert cli.main(_data_command(case, output, TINY[case][0])) == 0
    assert output.is_file() and not parallel.partial_path(output).exists()
    _reader(case)(output)  # a file its reader accepts
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith(f"{case}: wrote ") for line in lines), lines


def test_the_skeleton_removes_the_partial_file_and_keeps_the_previous_one_on_any_failure(
        tmp_path):
    target = tmp_path / "f.h5"
    with h5py.File(target, "w") as fh:
        fh["x"] = np.arange(4)

    def draw(task: int) -> int:
        if task == 3:
            raise RuntimeError("a bug in the physics")
        return task

    with pytest.raises(RuntimeError, match="a bug in the physics"):  # a bug keeps its traceback
        with parallel.generated_file(target, draw, list(range(6)), label="t", noun="rows",
                                     total=6, progress=False) as out:
            data = out.file.create_dataset("x", (6,), "i8")
            for task in out.results:
                data[task] = task
                out.advance(1)
    assert not parallel.partial_path(target).exists()
    with h5py.File(target, "r") as fh:
        np.testing.assert_array_equal(fh["x"][()], np.arange(4))
    for stop in (KeyboardInterrupt, SystemExit):
        with pytest.raises(stop):
            with parallel.generated_file(target, label="t", noun="rows", total=1,
                                         progress=False) as out:
                out.file["x"] = np.zeros(9)
                raise stop()
        assert not parallel.partial_path(target).exists()


def test_pool_results_keep_task_order_when_asked(tmp_path):
    with parallel.generated_file(tmp_path / "o.h5", abs, [-3, -1, -2, -5], processes=2,
                                 ordered=True, label="t", noun="rows", total=4,
                                 progress=False) as out:
        got = list(out.results)
        out.advance(len(got))
    assert got == [3, 1, 2, 5]
    assert out.report == parallel.GeneratorReport(str(tmp_path / "o.h5"), 4, "rows",
                                                  out.report.seconds, {})


def _default_interrupt() -> None:
    """Ctrl-C as a user's terminal delivers it: a suite started in the background by a
    non-interactive shell (as CI may) runs with SIGINT ignored, which every child inherits, and
    Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["term", "int", "kill"])
@pytest.mark.parametrize("case", list(LARGE))
def test_a_generator_killed_midway_leaves_no_file_a_reader_accepts(case, how, tmp_path):
    output = tmp_path / "out" / "f.h5"
    partial = parallel.partial_path(output)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "modelzoo.cli",
                             *_data_command(case, output, LARGE[case])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_interrupt)
    while not partial.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # midway: rows are being written
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(how)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not output.exists()
    with pytest.raises(ZooError, match="no such file"):
        _reader(case)(output)
    # Ctrl-C and SIGTERM remove the partial file; only SIGKILL, which no process can catch,
    # leaves it, under a name no reader is ever given.
    assert partial.exists() == (how == signal.SIGKILL)


def _with_file_size_limit(limit: int, argv: list[str], cwd) -> subprocess.CompletedProcess:
    """``modelzoo ARGV`` in a process that may not write files beyond ``limit`` bytes (what a
    full disk does to a write), with SIGXFSZ ignored so that the write fails with EFBIG."""
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
            "from modelzoo.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow  # a child process
@pytest.mark.parametrize("case", ["dayabay", "cosmology"])
def test_a_full_disk_while_generating_keeps_the_previous_file_and_says_what_failed(case,
                                                                                   tmp_path):
    from modelzoo import cli

    output = tmp_path / "f.h5"
    assert cli.main(_data_command(case, output, TINY[case][0])) == 0
    before = output.read_bytes()
    result = _with_file_size_limit(200_000, _data_command(case, output, LARGE[case]), tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1] == (f"modelzoo: error: {output}: writing failed (File too large); the "
                         "previous file is unchanged"), result.stderr
    assert "Traceback" not in result.stderr
    assert output.read_bytes() == before and not parallel.partial_path(output).exists()
    _reader(case)(output)


# The folder generators: their command with a tiny data set, and their reader.
FOLDERS = {
    "deepcam": (["climate", "deepcam", "--samples", "3", "--height", "16", "--width", "24"],
                "modelzoo.climate.deepcam:open_deepcam", "modelzoo.climate.deepcam:write_sample"),
    "cosmoflow": (["cosmology", "cosmoflow", "--volumes", "3", "--npix", "4", "--box-side",
                   "32"], "modelzoo.cosmology.cosmoflow_reader:open_volumes",
                  "modelzoo.cosmology.cosmoflow_generator:write_tfrecord"),
}


def _folder_reader(kind: str):
    import importlib

    module, _, function = FOLDERS[kind][1].partition(":")
    read = getattr(importlib.import_module(module), function)
    return (lambda path: read(str(path), {})) if kind == "cosmoflow" else read


def _folder_command(kind: str, output) -> list[str]:
    case, sub, *rest = FOLDERS[kind][0]
    return ["data", case, sub, "--output", str(output), *rest]


def test_the_folder_skeleton_removes_the_partial_folder_and_keeps_the_previous_one(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "kept.txt").write_text("previous")

    def draw(task: int) -> int:
        if task == 2:
            raise RuntimeError("a bug in the physics")
        return task

    for stop in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(stop):
            with parallel.generated_folder(target, draw, list(range(4)), label="t",
                                           noun="rows", total=4, progress=False) as out:
                assert out.folder == parallel.partial_path(target) and out.folder.is_dir()
                for task in out.results:
                    (out.folder / f"{task}.txt").write_text(str(task))
                    out.advance(1)
                    if stop is KeyboardInterrupt:
                        raise stop()
        assert not parallel.partial_path(target).exists()
        assert [p.name for p in target.iterdir()] == ["kept.txt"]
    with parallel.generated_folder(target, abs, [-1, -2], processes=2, ordered=True,
                                   label="t", noun="rows", total=2, progress=False) as out:
        for task in out.results:
            (out.folder / f"{task}.txt").write_text(str(task))
            out.advance(1)
    assert sorted(p.name for p in target.iterdir()) == ["1.txt", "2.txt"]
    assert not parallel.partial_path(target).exists()
    assert out.report == parallel.GeneratorReport(str(target), 2, "rows", out.report.seconds, {})


@pytest.mark.parametrize("kind", list(FOLDERS))
def test_folder_generators_return_the_file_generators_report(kind, tmp_path, capsys,
                                                             monkeypatch):
    import importlib

    from modelzoo import cli

    output = tmp_path / "new" / "folder"
    assert cli.main(_folder_command(kind, output)) == 0
    assert output.is_dir() and not parallel.partial_path(output).exists()
    _folder_reader(kind)(output)  # a folder its reader accepts
    lines = capsys.readouterr().err.strip().splitlines()
    label = "climate deepcam" if kind == "deepcam" else "cosmoflow"
    assert lines[-1].startswith(f"{label}: wrote 3 ") and f"to {output} in " in lines[-1], lines
    generate = {"deepcam": "modelzoo.climate.deepcam:generate_deepcam",
                "cosmoflow": "modelzoo.cosmology.cosmoflow_generator:generate_volumes"}[kind]
    module, _, function = generate.partition(":")
    sizes = ({"n_samples": 3, "height": 16, "width": 24} if kind == "deepcam"
             else {"n_volumes": 3, "npix": 4, "box_side": 32.0})
    report = getattr(importlib.import_module(module), function)(tmp_path / "again",
                                                                progress=False, **sizes)
    assert type(report) is parallel.GeneratorReport
    assert (report.path, report.rows) == (str(tmp_path / "again"), 3)

    # A failure midway (the second file of the folder cannot be written): no folder at all.
    module, _, function = FOLDERS[kind][2].partition(":")
    write = getattr(importlib.import_module(module), function)
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("the device went away")
        return write(*args, **kwargs)

    monkeypatch.setattr(importlib.import_module(module), function, fail_second)
    failed = tmp_path / "failed"
    with pytest.raises(OSError, match="the device went away"):
        cli.main(_folder_command(kind, failed))
    assert len(calls) == 2
    assert not failed.exists() and not parallel.partial_path(failed).exists()
    with pytest.raises(ZooError):
        _folder_reader(kind)(failed)


@pytest.mark.slow
@pytest.mark.parametrize("kind,large", [
    ("deepcam", ["--samples", "400", "--height", "96", "--width", "144"]),
    ("cosmoflow", ["--volumes", "400", "--npix", "32", "--volumes-per-cosmology", "100"]),
])
def test_a_folder_generator_killed_midway_leaves_no_folder_a_reader_accepts(kind, large,
                                                                            tmp_path):
    output = tmp_path / "out" / "folder"
    partial = parallel.partial_path(output)
    case, sub, *_ = FOLDERS[kind][0]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "modelzoo.cli", "data", case, sub,
                             "--output", str(output), "--processes", "2", *large],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (partial.exists() and any(partial.rglob("*.*"))) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()  # midway: files are being written
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not output.exists() and not partial.exists()
    with pytest.raises(ZooError):
        _folder_reader(kind)(output)


@pytest.mark.parametrize("key,tiny", [
    ("ecog_logreg.synthetic_v1", {"--trials": "4"}),
    ("dayabay_cnn.synthetic_v1", {"--ibd": "2", "--accidentals": "2", "--flashers": "2",
                                  "--muons": "2"}),
])
def test_a_cards_data_command_pasted_writes_the_entrys_data(key, tiny, tmp_path, capsys):
    """The card prints each data set of an entry as a ``modelzoo data`` command with the CLI's
    own flags; run as printed (sizes made tiny), it writes a file made with the recipe's
    settings."""
    import json
    import shlex

    from modelzoo import cli, manifest

    entry = manifest.load_manifest()[key]
    assert cli.main(["card", entry["model"]]) == 0
    card = capsys.readouterr().out
    section = card.split(f"### `{key}`")[1].split("### ")[0]
    line = next(line for line in section.splitlines() if line.strip().startswith("- eval: `"))
    words = shlex.split(line.split("`")[1])
    assert words[:2] == ["modelzoo", "data"] and not any("=" in w for w in words)
    for flag, value in tiny.items():
        words[words.index(flag) + 1] = value
    output = tmp_path / "eval.h5"
    words[words.index("--output") + 1] = str(output)
    assert cli.main(words[1:]) == 0
    with h5py.File(output, "r") as fh:
        made = json.loads(fh.attrs["generator_arguments"])
    wanted = entry["data_recipe"]["eval"]
    sizes = {k for k in wanted if k.startswith("n_")}
    assert {k: made[k] for k in wanted if k not in sizes} == {
        k: v for k, v in wanted.items() if k not in sizes}
    assert {made[k] for k in sizes} == {int(v) for v in tiny.values()}
