"""Training videos from still photos: a slow camera move (a zoom towards a random point) over
each picture of Debian's wallpaper / background packages. Real photographic content (skies,
rock, water, plants, cities) that the development clips have little of, with no licence
question for training (the packages are free software); see docs/TRAINING.md.

    apt-get download gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers ...
    for f in *.deb; do dpkg -x "$f" walls; done
    python -m sora_encoder.train.stills runs/stills walls --every 2      # prints paths
    sora train encoder --manifest clips/MANIFEST.csv --also runs/stills ...

Only wallpaper/background packages: images shipped inside other packages are kept for an
independent evaluation and must not be trained on.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from sora_encoder.media.lavfi import write_h264

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_images(folders: Sequence[str | Path]) -> list[Path]:
    """Image files under `folders` (recursive), sorted so the same folders give the same list."""
    found = set()
    for folder in folders:
        found.update(
            p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(found)


def camera_move(rng: random.Random, *, duration_s: float, fps: int, size: str) -> str:
    """A zoompan filter: from the whole picture to a zoom of 1.2-1.6 towards a random point,
    over `duration_s`, at `size` (the picture first scaled to 640 px wide)."""
    n = round(duration_s * fps)
    zoom, fx, fy = rng.uniform(1.2, 1.6), rng.random(), rng.random()
    return (
        f"scale=640:-2,setsar=1,zoompan=zoom='1+({zoom:.3f}-1)*on/{n}'"
        f":x='(iw-iw/zoom)*{fx:.3f}':y='(ih-ih/zoom)*{fy:.3f}':d={n}:s={size}:fps={fps}"
    )


def make_still_videos(
    images: Sequence[str | Path],
    out_dir: str | Path,
    *,
    seed: int = 0,
    duration_s: float = 8.0,
    fps: int = 15,
    size: str = "192x128",
) -> list[Path]:
    """One H.264 video per image, `still-NNN.mp4` in the order given, with a camera move drawn
    from `seed`; existing files are kept (same images and seed, same files)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i, image in enumerate(images):
        vf = camera_move(rng, duration_s=duration_s, fps=fps, size=size)  # drawn even if kept
        path = out / f"still-{i:03d}.mp4"
        paths.append(path)
        if not path.is_file():
            frames = str(round(duration_s * fps))
            write_h264(["-i", str(image)], path, output=["-vf", vf, "-frames:v", frames])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sora_encoder.train.stills OUT_DIR FOLDER... [--every K] [--seed S]`."""
    p = argparse.ArgumentParser(
        prog="python -m sora_encoder.train.stills",
        description="Training videos from still photos (a slow zoom over each); see "
        "docs/TRAINING.md. Use them with `sora train encoder --also OUT_DIR`.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write still-NNN.mp4 into")
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="folders of images (recursive)")
    p.add_argument("--every", type=int, default=1, help="use every K-th image (1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the camera moves (0)")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be >= 1")
    images = find_images(args.folders)[args.every - 1 :: args.every]
    if not images:
        p.error(f"no {'/'.join(IMAGE_SUFFIXES)} images under {' '.join(args.folders)}")
    for path in make_still_videos(images, args.out_dir, seed=args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
