"""LHC new-physics events: CNNs on whole-detector calorimeter images against the cut-based
physics selection (seed: "Classifying LHC events"; Bhimji et al., ACAT 2017, arXiv:1711.03573;
Kurth et al., SC17, arXiv:1708.05256).

Folder: ``models.py`` (builders), ``reader.py`` (ACAT and 15PF HDF5 layouts), ``generator.py``
(Pythia 8 events -> calorimeter images, ``modelzoo data lhc``), ``task.py`` (training and the
paper's comparison), ``recipes/`` (one YAML per model). Imports nothing heavy: the zoo reads
``CASE`` to list the models.
"""

from modelzoo.registry import Case, ModelSpec

_CITATION = (
    "Bhimji et al., Deep Neural Networks for Physics Analysis on low-level whole-detector data at "
    "the LHC, ACAT 2017, arXiv:1711.03573; Kurth et al., Deep Learning at 15PF, SC17, "
    "arXiv:1708.05256"
)
_PUBLISHED = (
    "On Delphes-simulated RPV gluino pairs (1400/850 GeV) vs QCD multijets (ACAT 2017 test set, "
    "695,446 events, 14.8/fb), the cut-based physics selection keeps TPR 0.419 at FPR 3.39e-4 "
    "(derived from the authors' evaluation notebook); the CNN on 64x64x3 images reaches a higher "
    "TPR at that FPR (about 0.7-0.8 read off the paper's ROC figure; not verified)."
)
_LAYOUT = (
    "HDF5, either all_events/{hist,histEM,histtrack,y,weight} (N,H,W each) or "
    "{data,label,weight[,normweight,psr]} with data (N,3,H,W) NCHW or (N,H,W,3) NHWC"
)

CASE = Case(
    name="lhc",
    title="LHC new-physics events: RPV SUSY gluino pairs against QCD multijets",
    package=__name__,
    models=(
        ModelSpec(
            name="lhc_cnn",
            builder="modelzoo.lhc.models:lhc_cnn",
            summary="The ACAT 2017 CNN on 64x64x3 calorimeter images: signal vs background.",
            domain="particle physics",
            problem="classification",
            inputs="(64, 64, 3) calorimeter images: energy, EM energy, track count in (eta, phi)",
            outputs="softmax over (background, signal)",
            citation=_CITATION,
            data_layout=_LAYOUT,
            recipe="lhc_cnn.yaml",
            sample={"data": {"n_signal": 8, "n_background": 8, "seed": 7},
                    "config": {"filters": 4, "dense_units": 8},
                    "recipe": {"train.batch_size": 4}},
            published=_PUBLISHED,
        ),
        ModelSpec(
            name="lhc_cnn_15pf",
            builder="modelzoo.lhc.models:lhc_cnn_15pf",
            summary="The 15PF benchmark CNN on 224x224x3 calorimeter images.",
            domain="particle physics",
            problem="classification",
            inputs="(224, 224, 3) calorimeter images: energy, EM energy, track count in (eta, phi)",
            outputs="softmax over (background, signal)",
            citation=_CITATION,
            data_layout=_LAYOUT,
            recipe="lhc_cnn_15pf.yaml",
            sample={"data": {"n_signal": 4, "n_background": 4, "image_size": 224,
                             "seed": 7},
                    "config": {"filters": 4, "num_conv_blocks": 2},
                    "recipe": {"train.batch_size": 4, "train.precision": "float32"}},
            published=_PUBLISHED + " The 15PF network trained on 10M 224x224 images at up to "
            "15 PF/s on ~9,600 Cori KNL nodes (Kurth et al., SC17).",
        ),
    ),
    tasks={"lhc_classification": "modelzoo.lhc.task:LHCClassification"},
    data_command="modelzoo.lhc.generator",
    generator="modelzoo.lhc.generator:generate_lhc_events",
    card=(
        "Synthetic data: `modelzoo data lhc` simulates 13 TeV collisions with Pythia 8 (QCD "
        "multijets in pT-hat slices weighted by cross-section; RPV gluino pairs, m(gluino) = "
        "1400 GeV, m(neutralino) = 850 GeV), bins final-state particles in (eta, phi) with a "
        "simple smeared calorimeter and stores the ACAT-style cut-based selection per event."
    ),
)
