"""Model cards: what a model is for, what it expects, what it scored, and where it falls short."""

from __future__ import annotations

import json

from modelzoo import manifest, registry

LIMITATIONS = (
    "Shipped weights are trained on the zoo's physics-informed synthetic data, not on the "
    "experiments' real data sets; their metrics describe the synthetic task and are not the "
    "published numbers. Fine-tune on your own data before drawing scientific conclusions, and "
    "check the input layout and normalisation against `modelzoo info`."
)


def model_card(name: str) -> str:
    """Markdown card for registered model ``name``, with its shipped entries' metrics."""
    from modelzoo.reproduce import data_commands

    spec = registry.get_spec(name)
    lines = [
        f"# {name}",
        "",
        spec.summary,
        "",
        f"- **Domain:** {spec.domain}",
        f"- **Problem:** {spec.problem}",
        f"- **Inputs:** {spec.inputs}",
        f"- **Outputs:** {spec.outputs}",
        f"- **Data layout:** {spec.data_layout or 'see the reader'}",
        f"- **Citation:** {spec.citation}",
        "",
        "## Intended use",
        "",
        f"Research use in {spec.domain}: train or fine-tune on your own HDF5 data with "
        f"`modelzoo train {name} --data FILE`, or start from the shipped weights with "
        f"`modelzoo.get({name!r}, weights='default')`.",
        "",
        "## Builder defaults",
        "",
        "```json",
        json.dumps(spec.defaults, indent=2, default=list),
        "```",
        "",
        "## Published result (real data)",
        "",
        spec.published or "No published number is attached to this model.",
        "",
    ]
    case = registry.cases().get(spec.case)
    if case is not None and case.card:
        lines += [f"## The case: {case.title}", "", case.card, ""]
    lines += [
        "## Shipped weights (synthetic data)",
        "",
    ]
    shipped = manifest.load_manifest()
    keys = [k for k in sorted(shipped) if shipped[k]["model"] == name]
    if not keys:
        lines.append("None yet.")
    for key in keys:
        entry = shipped[key]
        lines += [
            f"### `{key}`{' (default)' if entry.get('default') else ''}",
            "",
            entry.get("description", ""),
            "",
            f"- file `{entry['file']}`, {entry['bytes']:,} bytes, sha256 `{entry['sha256']}`",
            "- data, made by:",
            *(f"  - {split}: `{command}`" for split, command in data_commands(key).items()),
            f"- trained {entry['date']} with modelzoo {entry['modelzoo_version']}, "
            f"Keras {entry['keras_version']}, TensorFlow {entry['tensorflow_version']}",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| {m} | {v:.4g} |" if isinstance(v, float) else f"| {m} | {v} |"
              for m, v in entry["metrics"].items()),
            "",
        ]
    lines += ["## Limitations", "", LIMITATIONS, ""]
    return "\n".join(lines)
