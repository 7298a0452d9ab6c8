"""Extreme weather in climate simulations: supervised patch classifiers (Liu et al. 2016), the
semi-supervised detector of ExtremeWeather (Racah et al. 2017) (seed: "Finding extreme weather
events in climate simulations") and DeepCAM's pixel segmentation (Kurth et al. 2018).

Folder: ``models.py`` (builders), ``segmenter.py`` (DeepLabv3+), ``deepcam.py`` (DeepCAM's
folders: reader and synthetic writer), ``masks.py`` (pixel labels from the events' physics),
``segmentation.py`` (its task, IoU and threshold baseline), ``boxes.py`` (the box convention
and its grid encoding),
``detection.py`` (VOC average precision), ``reader.py`` (ExtremeWeather and patch files),
``generator.py`` (synthetic snapshots with parametric storms, ``modelzoo data climate``),
``patches.py`` (patch extraction), ``netcdf.py`` (CF netCDF model output via xarray),
``task.py`` (training and the papers' comparisons), ``recipes/``. Imports nothing heavy.
"""

from modelzoo.registry import Case, ModelSpec

_LIU = (
    "Liu, Racah, Prabhat, Correa, Khosrowshahi, Lavers, Kunkel, Wehner, Collins, Application "
    "of Deep Convolutional Neural Networks for Detecting Extreme Weather in Climate Datasets, "
    "ABDA 2016, arXiv:1605.01156"
)
_RACAH = (
    "Racah, Beckham, Maharaj, Kahou, Prabhat, Pal, ExtremeWeather: A large-scale climate "
    "dataset for semi-supervised detection, localization, and understanding of extreme weather "
    "events, NeurIPS 2017, arXiv:1612.02095"
)
_IMAGES = (
    "HDF5 (ExtremeWeather): images (N, 16, H, W) float32 (published 768 x 1152; PRECT, PS, "
    "PSL, QREFHT, T200, T500, TMQ, TREFHT, TS, U850, UBOT, V850, VBOT, Z100, Z200, ZBOT) and "
    "boxes (N, 15, 5) = ymin, xmin, ymax, xmax, class (0 TD, 1 TC, 2 ETC, 3 AR), -1 padded; "
    "an image without boxes is unlabelled"
)
_KURTH = (
    "Kurth, Treichler, Romero, Mudigonda, Luehr, Phillips, Mahesh, Matheson, Deslippe, "
    "Fatica, Prabhat, Houston, Exascale Deep Learning for Climate Analytics, SC18 (Gordon Bell "
    "prize), arXiv:1810.01993; Chen et al., DeepLabv3+, ECCV 2018, arXiv:1802.02611"
)
_DEEPCAM = (
    "DeepCAM folder (MLPerf HPC): per-sample HDF5 files data-*.h5 with climate/data (768, 1152, "
    "16) float (TMQ, U850, V850, UBOT, VBOT, QREFHT, PS, PSL, T200, T500, PRECT, TS, TREFHT, "
    "Z1000, Z200, ZBOT) and climate/labels_0 (768, 1152) int (0 background, 1 tropical "
    "cyclone, 2 atmospheric river), with stats.h5 (climate/minval, maxval, mean, sqmean, count) "
    "beside them or one folder up"
)
_PATCHES = (
    "HDF5 patch file (`modelzoo data climate patches`): images (N, C, h, w) float32, labels "
    "(N,) (0 = no event), attributes channels and class_names"
)

CASE = Case(
    name="climate",
    title="Finding extreme weather events in climate simulations",
    package=__name__,
    models=(
        ModelSpec(
            name="climate_patch_cnn",
            builder="modelzoo.climate.models:climate_patch_cnn",
            summary="Liu et al. 2016 CNN classifying centred multi-channel patches of one "
                    "extreme-weather event type (or several) against no event.",
            domain="climate science",
            problem="classification",
            inputs="(h, w, C) standardised fields, e.g. 32 x 32 x 8 for tropical cyclones",
            outputs="softmax over (no event, event classes...)",
            citation=_LIU,
            data_layout=_PATCHES,
            recipe="climate_patch_cnn.yaml",
            sample={"data": {"kind": "patches", "event": "tropical_cyclone", "height": 64,
                             "width": 96, "lat_range": [0, 60], "lon_range": [140, 260],
                             "n_images": 12, "patch_size": [16, 16], "seed": 7},
                    "config": {"filters": [4, 4], "dense_units": 8},
                    "recipe": {"train.batch_size": 4}},
            published=(
                "Liu et al. 2016 (abstract): 89-99% accuracy; per event type about 99% for "
                "tropical cyclones, 90% for atmospheric rivers and 89.4% for weather fronts "
                "(per-type numbers not verified against the paper's tables)."
            ),
            search_space={
                "model.dense_units": {"type": "int", "low": 16, "high": 128, "log": True},
                "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3,
                                            "log": True},
            },
        ),
        ModelSpec(
            name="climate_detector",
            builder="modelzoo.climate.models:climate_detector",
            summary="Racah et al. 2017 semi-supervised detector: stride-2 conv encoder, "
                    "YOLO-style head on the coarse grid, mirrored decoder reconstructing the "
                    "input.",
            domain="climate science",
            problem="detection",
            inputs="(H, W, 16) standardised fields (published 768 x 1152 x 16)",
            outputs="detection (H/64, W/64, 6 + 4): box, objectness, class per cell; "
                    "reconstruction (H, W, 16)",
            citation=_RACAH,
            data_layout=_IMAGES,
            recipe="climate_detector.yaml",
            sample={"data": {"kind": "images", "height": 64, "width": 96, "lat_range": [0, 60],
                             "lon_range": [140, 260], "n_images": 8, "seed": 7},
                    "config": {"filters": [4, 4, 4]},
                    "recipe": {"train.batch_size": 2, "data.grid_cell": 8}},
            published=(
                "Racah et al. 2017: mAP at IoU 0.5 and 0.1 for 2-D/3-D, supervised and "
                "semi-supervised models on ExtremeWeather (train 1979, test 1984); unlabelled "
                "data and time improve localisation. The numeric table was not retrieved here."
            ),
            search_space={
                "loss.reconstruction_weight": {"type": "float", "low": 0.1, "high": 30.0,
                                               "log": True},
                "optimizer.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3,
                                            "log": True},
            },
        ),
        ModelSpec(
            name="climate_segmenter",
            builder="modelzoo.climate.segmenter:climate_segmenter",
            summary="DeepCAM's DeepLabv3+ (Kurth et al. 2018), compact: per-pixel masks of "
                    "tropical cyclones and atmospheric rivers from 16 CAM5 fields.",
            domain="climate science",
            problem="segmentation",
            inputs="(H, W, 16) fields as a DeepCAM file stores them (768 x 1152 x 16 "
                   "published); the stats.h5 scaling is a layer inside the model",
            outputs="class_probabilities (H, W, 3): background, tropical cyclone, "
                    "atmospheric river",
            citation=_KURTH,
            data_layout=_DEEPCAM,
            recipe="climate_segmenter.yaml",
            # The shipped entry's grid (its weights take 384 x 576 fields), two samples.
            sample={"data": {"kind": "deepcam", "height": 384, "width": 576, "n_samples": 2,
                             "seed": 7},
                    # 16 channels at least: TensorFlow 2.21's oneDNN separable convolutions
                    # crashed (double free) training with 4 or 8.
                    "config": {"filters": [16, 16, 16, 16], "stem_filters": 16,
                               "aspp_filters": 16, "decoder_filters": 16,
                               "low_level_filters": 16, "atrous_rates": [1]},
                    "recipe": {"train.batch_size": 1, "data.val_fraction": 0.0}},
            published=(
                "Kurth et al. 2018: DeepLabv3+ on 27,360 V100 GPUs, 90.7% parallel "
                "efficiency; MLPerf HPC DeepCAM trains it to a mean IoU of 0.82 on CAM5 fields "
                "(TECA labels)."
            ),
            search_space={
                "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3,
                                            "log": True},
            },
        ),
    ),
    tasks={
        "climate_segmentation": "modelzoo.climate.segmentation:ClimateSegmentation",
        "climate_patch_classification": "modelzoo.climate.task:ClimatePatchClassification",
        "climate_detection": "modelzoo.climate.task:ClimateDetection",
    },
    data_command="modelzoo.climate.generator",
    generator="modelzoo.climate.generator:generate_climate",
    card=(
        "Synthetic data: `modelzoo data climate images` writes the ExtremeWeather layout: "
        "smooth large-scale fields in the 16 CAM5 channels with tropical cyclones and "
        "depressions from a Holland (1980) vortex (warm core, moisture bulge, eyewall rain), "
        "extratropical cyclones with warm and cold fronts, and atmospheric rivers (TMQ "
        "filaments >= 2,000 km long, < 1,000 km wide, IVT >> 250 kg/m/s), with their boxes; "
        "`modelzoo data climate deepcam` writes the same fields as a DeepCAM folder with pixel "
        "masks from the events' physics (cyclones: gale-force wind extent; rivers: IVT >= "
        "250 kg/m/s along the filament); "
        "`modelzoo data climate patches` cuts Liu et al.'s centred patches from it; "
        "`modelzoo data climate netcdf` converts CF netCDF model output (CAM5, reanalysis). "
        "Shipped weights are trained on small synthetic grids, not on CAM5 output: use them to "
        "try the pipeline, and retrain on real data."
    ),
)
