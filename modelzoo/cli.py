"""The ``modelzoo`` command: list, info, train, evaluate, predict, data, pretrained, card, and
the commands of optional modules (tune, explain).

Built from the registered cases: ``modelzoo data <case>`` exists for every case that declares a
data command. Nothing heavy is imported to parse the command line or to list models; the zoo's
own user errors (:class:`modelzoo.errors.ZooError`) print as one line, anything else keeps its
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
from typing import Any

# Commands provided by core modules with ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS = {
    "tune": ("modelzoo.tuning", "hyperparameter search for a model (Optuna)"),
    "explain": ("modelzoo.interpret", "saliency, embeddings, reconstructions of a model"),
}


def _parse_assignments(pairs: list[str], what: str) -> dict[str, Any]:
    """``key=value`` strings to a dict; values are parsed as YAML (numbers, lists, booleans)."""
    from modelzoo.training import load_yaml

    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"modelzoo: {what} {pair!r} must look like key=value")
        result[key] = load_yaml(value)
    return result


def _json_object(text: str, flag: str) -> dict[str, Any]:
    from modelzoo.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{flag}: not valid JSON ({err.msg} at character {err.pos}): "
                          f"{text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: expected a JSON object {{...}}, got {text!r}")
    return value


def _cmd_list(args: argparse.Namespace) -> int:
    import modelzoo

    names = modelzoo.list_models(
        args.pattern, domain=args.domain, problem=args.problem, pretrained=args.pretrained
    )
    for name in names:
        spec = modelzoo.get_spec(name)
        print(f"{name:<22} {spec.domain:<20} {spec.problem:<18} {spec.summary}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import yaml

    import modelzoo

    print(yaml.safe_dump(modelzoo.info(args.model), sort_keys=False, width=100))
    return 0


@contextlib.contextmanager
def _removed_if_refused(folder: str):
    """A folder this command creates is removed again if the command is refused (a
    :class:`~modelzoo.errors.ZooError`) before it holds a checkpoint: a refused command leaves
    nothing behind. A folder that existed before is left as it is."""
    from modelzoo.errors import ZooError

    fresh = not os.path.exists(folder)
    try:
        yield
    except ZooError:
        if fresh and not os.path.exists(os.path.join(folder, "checkpoints", "latest.json")):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _cmd_train(args: argparse.Namespace) -> int:
    from modelzoo import training

    overrides = _parse_assignments(args.set, "--set")
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.batch_size is not None:
        overrides["train.batch_size"] = args.batch_size
    if args.init_weights is not None:
        overrides["model.init_weights"] = args.init_weights
    run_dir = args.output or os.path.join("runs", args.model)
    with _removed_if_refused(run_dir):
        result = training.train(
            args.model,
            args.data,
            run_dir=run_dir,
            recipe=args.recipe,
            overrides=overrides,
            model_config=_parse_assignments(args.model_config, "--model-config"),
            resume=not args.no_resume,
            verbose=args.verbose,
        )
    from modelzoo import distributed

    if distributed.init().is_root:
        print(
            f"trained {args.model}: epochs {result.resumed_from}->{result.final_epoch} in "
            f"{result.seconds:.1f} s ({result.examples_per_second:.0f} examples/s); "
            f"run folder {result.run_dir}"
        )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from modelzoo import distributed, training
    from modelzoo.errors import ConfigError

    overrides = _parse_assignments(args.set, "--set")
    if args.run:
        with _removed_if_refused(args.output) if args.output else contextlib.nullcontext():
            metrics = training.evaluate(args.run, args.data, split=args.split,
                                        output_dir=args.output, overrides=overrides)
    elif args.model and args.weights:
        _warn_if_unlike_training(args.model, args.weights, args.data)
        with _removed_if_refused(args.output) if args.output else contextlib.nullcontext():
            metrics = training.evaluate_model(args.model, args.weights, args.data,
                                              split=args.split, output_dir=args.output,
                                              overrides=overrides)
    else:
        raise ConfigError("evaluate needs MODEL --weights W (default, a tag, a weights file, a "
                          "model or run folder) or --run RUN_FOLDER")
    if distributed.init().is_root:
        print(json.dumps(metrics, indent=2, default=str))
        if args.output or args.run:
            print(f"metrics.json and figures in {args.output or args.run}")
    return 0


def _warn_if_unlike_training(model: str, weights: str, data: str) -> None:
    """One warning line when ``data`` was generated with other settings than the shipped
    entry's training and evaluation data (a model folder or weights file: no check)."""
    import os

    from modelzoo import pretrained, reproduce
    from modelzoo.errors import ZooError

    if os.path.exists(weights):
        return
    try:
        key, _ = pretrained.resolve(model, weights)
    except ZooError:
        return  # evaluating says what is wrong with the weights
    reason = reproduce.unlike_training(key, data)
    if reason:
        print(f"modelzoo: warning: {reason}", file=sys.stderr, flush=True)


def _cmd_predict(args: argparse.Namespace) -> int:
    from modelzoo import distributed, training

    shapes = training.predict(args.model, args.weights, args.data, args.output,
                              overrides=_parse_assignments(args.set, "--set"))
    if distributed.init().is_root:
        listing = ", ".join(f"{k} {v}" for k, v in shapes.items())
        print(f"wrote {args.output}: {listing}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from modelzoo import registry
    from modelzoo.errors import ConfigError

    if args.from_entry:
        return _data_from_entry(args)
    if not args.dataset:
        raise ConfigError("data needs a CASE (modelzoo data --help) or --from-entry ENTRY")
    case = registry.cases()[args.dataset]
    importlib.import_module(case.data_command).run(args)
    return 0


def _data_from_entry(args: argparse.Namespace) -> int:
    """``modelzoo data --from-entry KEY --output F``: the data set a shipped entry was evaluated
    (or trained, or checked) on, made by the entry's own data recipe."""
    import time

    from modelzoo import reproduce
    from modelzoo.errors import ConfigError

    entry = reproduce.manifest_entry(args.from_entry)
    recipe = entry.get("data_recipe") or {}
    if args.entry_split not in recipe:
        splits = [k for k in recipe if k != "generator"]
        raise ConfigError(f"{args.from_entry}: its data recipe has no {args.entry_split!r} "
                          f"set; it has {', '.join(splits) or 'none'}")
    if not args.output:
        raise ConfigError("data --from-entry needs --output FILE")
    if os.path.exists(args.output):
        raise ConfigError(f"{args.output}: exists; remove it or choose another --output")
    start = time.perf_counter()
    reproduce.generate(recipe["generator"], args.output, recipe[args.entry_split])
    arguments = ", ".join(f"{k}={v}" for k, v in recipe[args.entry_split].items())
    print(f"wrote {args.output}: the {args.entry_split} set of {args.from_entry} "
          f"({recipe['generator']} generator, {arguments}) in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    return 0


def _cmd_pretrained(args: argparse.Namespace) -> int:
    from modelzoo import manifest

    if args.action == "list":
        for key in manifest.list_pretrained():
            entry = manifest.load_manifest()[key]
            star = "*" if entry.get("default") else " "
            print(f"{key:<32}{star} {entry['bytes'] / 1e6:6.2f} MB  {entry['description']}")
        return 0
    if args.action == "table":
        from pathlib import Path

        from modelzoo import pretrained

        if not args.output:
            print(pretrained.results_table(), end="")
            return 0
        root = manifest.PRETRAINED_DIR.resolve().parent
        prefix = os.path.relpath(root, Path(args.output).resolve().parent)
        text = pretrained.results_page("" if prefix == "." else f"{prefix}/")
        if args.check:
            current = Path(args.output).read_text() if Path(args.output).exists() else ""
            if current != text:
                print(f"{args.output} is not current; run: modelzoo pretrained table --output "
                      f"{args.output}", file=sys.stderr)
                return 1
            return 0
        Path(args.output).write_text(text)
        return 0
    from modelzoo import reproduce  # loads TensorFlow: list and table answer without it

    if args.action == "verify":
        keys = [args.key] if args.key else manifest.list_pretrained()
        failed = False
        for key in keys:
            outcome = reproduce.verify(key, full=args.full)
            failed |= bool(outcome["problems"])
            status = "FAIL " + "; ".join(outcome["problems"]) if outcome["problems"] else "ok"
            print(f"{key}: {status}")
        return 1 if failed else 0
    if args.action == "publish":
        if not (args.key and args.tag and args.data_recipe):
            raise SystemExit("modelzoo: pretrained publish needs MODEL --tag T --data-recipe JSON")
        entry = reproduce.publish(
            args.key, args.tag, _json_object(args.data_recipe, "--data-recipe"), args.work_dir,
            overrides=_parse_assignments(args.set, "--set"),
            description=args.description,
            tolerance=_json_object(args.tolerance, "--tolerance") if args.tolerance else None,
        )
        print(json.dumps(entry["metrics"], indent=2))
        return 0
    if args.action == "recreate":
        if not args.key:
            raise SystemExit("modelzoo: pretrained recreate needs a KEY (see `pretrained list`)")
        outcome = reproduce.recreate(args.key, args.work_dir)
        print(json.dumps(outcome["metrics"], indent=2))
        if outcome["problems"]:
            print("outside tolerance: " + "; ".join(outcome["problems"]))
            return 1
        print(f"{args.key}: re-created within tolerance ({outcome['run_dir']})")
        return 0
    raise AssertionError(args.action)


def _cmd_card(args: argparse.Namespace) -> int:
    from modelzoo.cards import model_card

    text = model_card(args.model)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as fh:
            fh.write(text)
    else:
        print(text)
    return 0


def _exit_after_write_failure(err: BaseException, code: int) -> None:
    """End the process now after a failed write (:class:`~modelzoo.errors.WriteError`): HDF5
    cannot close a file whose write failed for lack of space, and freeing its handles at exit
    crashed the interpreter (see :data:`modelzoo.parallel.UNCLOSABLE`; Keras's weights files are
    HDF5 too). Nothing is lost: the failed file was already removed and the previous one kept."""
    from modelzoo.errors import WriteError

    if isinstance(err, WriteError):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser. The options of ``data <case>`` and of the optional commands are
    added only when ``argv`` asks for that command, so that ``--help`` stays instant."""
    argv = sys.argv[1:] if argv is None else argv
    wanted = next((a for a in argv if not a.startswith("-")), None)
    data_cases = wanted == "data"
    parser = argparse.ArgumentParser(
        prog="modelzoo", description="Deep learning for science: models, data, training."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell wildcard, e.g. 'lhc*'")
    p.add_argument("--domain", help="e.g. 'particle physics' or 'astro*'")
    p.add_argument("--problem", help="kind of problem, e.g. classification")
    p.add_argument("--pretrained", action="store_true", help="only models with shipped weights")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="describe a model")
    p.add_argument("model")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train a model on an HDF5 file (works under horovodrun)")
    p.add_argument("model")
    p.add_argument("--data", required=True, help="HDF5 file")
    p.add_argument("--output",
                   help="run folder (default runs/MODEL); resumed if it has checkpoints")
    p.add_argument("--recipe", help="YAML recipe (default: the model's own)")
    p.add_argument("--epochs", type=int, help="final epoch")
    p.add_argument("--batch-size", type=int, help="batch size per process")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe key, e.g. --set optimizer.learning_rate=3e-4")
    p.add_argument("--model-config", action="append", default=[], metavar="KEY=VALUE",
                   help="override a builder keyword, e.g. --model-config dropout=0.2")
    p.add_argument("--init-weights", metavar="WEIGHTS",
                   help="fine-tune: start from these weights (default, a shipped tag, a weights "
                   "file, a model or run folder); the recipe key model.init_weights")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model on an HDF5 file: the case's "
                       "comparison, metrics.json and figures")
    p.add_argument("model", nargs="?", help="registry name (with --weights)")
    p.add_argument("--weights", help="default, a shipped tag, a weights file, a model or run "
                   "folder")
    p.add_argument("--run", help="run folder written by `modelzoo train` (instead of MODEL "
                   "--weights)")
    p.add_argument("--data", required=True, help="HDF5 file")
    p.add_argument("--split", default="all",
                   help="all, train or val (the recipe's split; some tasks add test)")
    p.add_argument("--output", help="where metrics.json and figures go (default: the run "
                   "folder with --run, none otherwise)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the recipe for this evaluation, e.g. "
                   "--set data.eval_samples=256")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="per-row outputs of a model on an HDF5 file, written to "
                       "HDF5 in the input's row order")
    p.add_argument("model")
    p.add_argument("--weights", default="default",
                   help="default, a shipped tag, a weights file, a model or run folder")
    p.add_argument("--data", required=True, help="HDF5 file")
    p.add_argument("--output", required=True, help="HDF5 file to write, e.g. preds.h5")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the recipe, e.g. --set data.eval_samples=32")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("pretrained", help="shipped weights: list, verify, re-create from scratch, "
                       "results table")
    p.add_argument("action", choices=("list", "verify", "recreate", "publish", "table"))
    p.add_argument("key", nargs="?",
                   help="entry, e.g. lhc_cnn.pythia_presel_v2 (verify: all); publish: MODEL")
    p.add_argument("--work-dir", default="runs/recreate", help="data and run folder")
    p.add_argument("--tag", help="publish: entry tag, e.g. pythia_presel_v3")
    p.add_argument("--data-recipe", help='publish: JSON {"generator": ..., "train": {...}, '
                   '"eval": {...}}')
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="publish: recipe overrides")
    p.add_argument("--description", default="", help="publish: one line for the manifest")
    p.add_argument("--full", action="store_true",
                   help="verify on the full evaluation set, not the entry's quick check set")
    p.add_argument("--tolerance", help='publish: JSON {"metric": relative tolerance} for recreate')
    p.add_argument("--output", help="table: write the results page (docs/results.md) here")
    p.add_argument("--check", action="store_true",
                   help="table: exit 1 when --output is not what the manifest renders")
    p.set_defaults(func=_cmd_pretrained)

    p = sub.add_parser("card", help="print a model card (markdown)")
    p.add_argument("model")
    p.add_argument("--output", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_card)

    p = sub.add_parser("data", help="generate a case's synthetic data set "
                       "(modelzoo data CASE --help)")
    p.add_argument("--from-entry", metavar="ENTRY",
                   help="write the data set of a shipped entry (e.g. cosmo_dcae.clean_v1): "
                   "the generator and settings it was made with")
    p.add_argument("--entry-split", default="eval", choices=("eval", "check", "train"),
                   help="with --from-entry: which of its sets (default eval)")
    p.add_argument("--output", help="with --from-entry: HDF5 file to write")
    p.set_defaults(func=_cmd_data, dataset=None)
    if data_cases:
        from modelzoo import registry

        data_sub = p.add_subparsers(dest="dataset")
        # Only the named case's generator module is imported: some import TensorFlow, which
        # would cost every `modelzoo data` process seconds (a case not named still has its
        # subcommand, for `modelzoo data --help`).
        named = set(argv[argv.index("data") + 1:])
        for name, case in sorted(registry.cases().items()):
            if case.data_command:
                q = data_sub.add_parser(name, help=case.title)
                if name in named:
                    importlib.import_module(case.data_command).add_arguments(q)
                q.set_defaults(func=_cmd_data)
    else:
        p.add_argument("dataset", nargs="?", help="case name, e.g. lhc")

    for command, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is None:
            continue
        p = sub.add_parser(command, help=help_text)
        if command == wanted:
            loaded = importlib.import_module(module)
            loaded.add_arguments(p)
            p.set_defaults(func=loaded.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from modelzoo._quiet import filtered_stderr
    from modelzoo.errors import ZooError

    args = build_parser(argv).parse_args(argv)
    try:
        with filtered_stderr():
            return args.func(args)
    except ZooError as err:
        # The user's input is wrong (a file, a name, a setting), or the machine could not
        # write (disk full): one line, not a traceback.
        print(f"modelzoo: error: {err}", file=sys.stderr)
        _exit_after_write_failure(err, 2)
        return 2


if __name__ == "__main__":
    sys.exit(main())
