#!/usr/bin/env python3
"""Fixtures that hold src/robustness/imagenet-c/ to the reference ImageNet-C corruptions.

The reference is the `imagecorruptions` package (bethgelab/imagecorruptions, Apache-2.0). It is
not part of this project: bring a copy of its source and name its directory, e.g.

    /usr/bin/python3 scripts/make_corruption_fixtures.py --reference /tmp/imagecorruptions

It needs Debian's python3-scipy, python3-skimage, python3-opencv, python3-numba and python3-pil.
Only its outputs are written (test/fixtures/corruptions/): the clean images, the reference's
output of every deterministic corruption as PNG, and for the random ones the statistics of
(corrupted - clean) over many seeds. The tests compare ours to these; nothing here runs in CI.
"""
import argparse
import gzip
import json
import sys
from pathlib import Path

import warnings

import numpy as np
from PIL import Image

DETERMINISTIC = [
    "brightness",
    "contrast",
    "saturate",
    "pixelate",
    "jpeg_compression",
    "defocus_blur",
    "zoom_blur",
    "gaussian_blur",
]
SEVERITIES = [1, 3, 5]
# Small images vary more from draw to draw (one frost crop, a few drops): more draws for them.
SEEDS = {"rgb224": 64, "grey40x56": 400, "fashion28": 400}


def synthetic_rgb(height, width, seed):
    """A picture with what corruptions act on: smooth regions, edges, texture and colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.zeros((height, width, 3))
    img[..., 0] = 0.25 + 0.5 * y
    img[..., 1] = 0.45 + 0.3 * x
    img[..., 2] = 0.85 - 0.4 * y
    disc = (x - 0.7) ** 2 + (y - 0.3) ** 2 < 0.02
    img[disc] = [0.95, 0.85, 0.2]
    block = (x > 0.1) & (x < 0.45) & (y > 0.5) & (y < 0.9)
    img[block] = [0.6, 0.15, 0.1]
    stripes = (x > 0.55) & (y > 0.6)
    img[stripes, 1] = 0.5 + 0.45 * np.sin(40 * x[stripes] + 25 * y[stripes])
    img += rng.normal(0, 0.03, img.shape)
    return np.uint8(np.clip(img, 0, 1) * 255 + 0.5)


def fashion_image(index):
    """One Fashion-MNIST test image (Debian's dataset-fashion-mnist), 28 x 28 grey."""
    path = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    raw = gzip.open(path).read()
    return np.frombuffer(raw, np.uint8, 28 * 28, 16 + 28 * 28 * index).reshape(28, 28)


def reference_corrupt(ic, image, name, severity):
    """The reference's corrupt(): grey images stacked to RGB, float output cut to uint8. Its
    check for 32 px is the only step skipped, so that small images are run the same way."""
    if image.ndim == 2:
        image = np.stack((image,) * 3, axis=-1)
    return np.uint8(ic.corruption_dict[name](Image.fromarray(image), severity))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="directory holding imagecorruptions/")
    parser.add_argument("--out", default="test/fixtures/corruptions")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the reference's 0 / 0 in spatter, handled below
    sys.path.insert(0, args.reference)
    import imagecorruptions as ic  # noqa: E402 (from the directory named above)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "rgb224": synthetic_rgb(224, 224, 1),
        "grey40x56": np.uint8(synthetic_rgb(40, 56, 2).mean(axis=2)),
        "fashion28": fashion_image(0),
    }
    stats = {"seeds": SEEDS, "severities": SEVERITIES, "images": {}}
    for key, image in images.items():
        Image.fromarray(image).save(out / f"{key}.png")
        clean = np.stack((image,) * 3, axis=-1) if image.ndim == 2 else image
        clean = clean.astype(np.float64)
        per = stats["images"][key] = {}
        for name in ic.get_corruption_names("all"):
            for severity in SEVERITIES:
                if name in DETERMINISTIC:
                    np.random.seed(0)
                    result = reference_corrupt(ic, image, name, severity)
                    Image.fromarray(result).save(out / f"{key}-{name}-{severity}.png")
                    continue
                abs_means, stds, blackened = [], [], 0
                for seed in range(SEEDS[key]):
                    np.random.seed(seed)
                    result = reference_corrupt(ic, image, name, severity).astype(np.float64)
                    if name == "spatter" and result.max() == 0 < clean.max():
                        # Where no drop forms (small images, severity 1), the reference divides
                        # 0 by 0 and returns a black image. Ours leaves the image as it is; the
                        # statistics count such a draw as that, an image unchanged.
                        result = clean
                        blackened += 1
                    diff = result - clean
                    abs_means.append(float(np.abs(diff).mean()))
                    stds.append(float(diff.std()))
                per[f"{name}/{severity}"] = {
                    "meanAbs": float(np.mean(abs_means)),
                    "std": float(np.mean(stds)),
                    "meanAbsSpread": float(np.std(abs_means)),
                    "stdSpread": float(np.std(stds)),
                    **({"blackenedDraws": blackened} if blackened else {}),
                }
                print(key, name, severity, per[f"{name}/{severity}"], flush=True)
    (out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")


if __name__ == "__main__":
    main()
