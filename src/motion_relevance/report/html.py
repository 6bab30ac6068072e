"""The interactive report: ONE self-contained HTML file (inline CSS/JS, base64 media, no network).

``ReportWriter`` collects the report's content window by window and writes nothing big to
memory: frames go to a temporary JPEG list and each method's quantised arrays (see
``motion_relevance.report.viewer``) to zlib streams on disk; ``write`` then streams everything
into the HTML file. In the browser the arrays are inflated with the built-in
``DecompressionStream``, so the page needs no library and works from ``file://``.

``read_report`` parses a written report back (for tests and for tools that post-process).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image

from motion_relevance.errors import InvalidInputError, OutputError
from motion_relevance.report.overlay import ALPHA, DIVERGING, GAMMA, colormap_lut
from motion_relevance.report.viewer import ViewerWindow
from motion_relevance.video.clips import ClipWindow

#: Longest side of the frames embedded in the report (pixels).
DISPLAY_MAX_SIDE = 480
JPEG_QUALITY = 82
FORMAT_VERSION = 1
_ARRAYS = (("d", "<u2"), ("m", "<u2"), ("e", "i1"))


def _asset(name: str) -> str:
    return resources.files("motion_relevance.report").joinpath("assets", name).read_text(encoding="utf-8")


def _json_for_script(obj: Any) -> str:
    """JSON safe to place inside a ``<script>`` element."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def display_size(height: int, width: int, max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """(H, W) of the report's frames: the video's size fitted into ``max_side``."""
    f = min(1.0, max_side / max(height, width))
    return max(1, round(height * f)), max(1, round(width * f))


def _shuffle(array: np.ndarray) -> bytes:
    """Bytes of ``array`` with all low bytes first, then all high bytes (for 2-byte types).

    Splitting the bytes of each sample ("byte shuffle") lets deflate compress the smooth high
    bytes apart from the noisy low ones: about 20 % smaller reports.
    """
    if array.dtype.itemsize == 1:
        return array.tobytes()
    return np.ascontiguousarray(array.reshape(-1).view(np.uint8).reshape(-1, array.dtype.itemsize).T).tobytes()


def _unshuffle(data: bytes | np.ndarray, dtype: str, count: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    size = np.dtype(dtype).itemsize
    if size == 1:
        return raw.view(dtype)[:count]
    return np.ascontiguousarray(raw[: count * size].reshape(size, count).T).view(dtype).reshape(-1)


class _ZStream:
    """Append bytes to a zlib stream in a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = path.open("wb")
        self._z = zlib.compressobj(9)

    def write(self, data: bytes) -> None:
        self._file.write(self._z.compress(data))

    def close(self) -> None:
        if not self._file.closed:
            self._file.write(self._z.flush())
            self._file.close()


@dataclass
class _MethodParts:
    name: str
    streams: dict[str, _ZStream]
    windows: list[dict[str, Any]]
    frames: int = 0


class ReportWriter:
    """Build the report window by window; ``write`` assembles the HTML file.

    ``parts_dir`` holds the temporary parts (removed by ``write`` or ``discard``).
    """

    def __init__(
        self,
        parts_dir: str | Path,
        methods: Sequence[str],
        *,
        frame_size: tuple[int, int],
        map_size: tuple[int, int],
        crop_box: tuple[float, float, float, float] | None = None,
        display_max_side: int = DISPLAY_MAX_SIDE,
    ) -> None:
        if not methods:
            raise InvalidInputError("a report needs at least one method")
        self.parts_dir = Path(parts_dir)
        try:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write report parts to {self.parts_dir}: {exc.strerror}") from None
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.map_size = (int(map_size[0]), int(map_size[1]))
        h, w = self.frame_size
        top, left, bh, bw = crop_box or (0.0, 0.0, float(h), float(w))
        self.box = (top / h, left / w, bh / h, bw / w)
        self.display = display_size(h, w, display_max_side)
        self.frame_count = 0
        self._frames = (self.parts_dir / "frames.txt").open("w", encoding="ascii")
        self._methods: dict[str, _MethodParts] = {}
        for i, name in enumerate(methods):
            streams = {key: _ZStream(self.parts_dir / f"m{i}-{key}.z") for key, _ in _ARRAYS}
            self._methods[name] = _MethodParts(name, streams, [])

    def add_frames(self, frames: np.ndarray) -> None:
        """Append uint8 ``(T, H, W, 3)`` frames (in video order, each frame once)."""
        dh, dw = self.display
        for frame in frames:
            if frame.shape[:2] != self.frame_size:
                raise InvalidInputError(f"report frames must be {self.frame_size}, got {frame.shape[:2]}")
            small = cv2.resize(frame, (dw, dh), interpolation=cv2.INTER_AREA) if (dh, dw) != frame.shape[:2] else frame
            buf = io.BytesIO()
            Image.fromarray(small).save(buf, format="JPEG", quality=JPEG_QUALITY)
            self._frames.write(base64.b64encode(buf.getvalue()).decode("ascii") + "\n")
            self.frame_count += 1

    def add_window(self, method: str, vw: ViewerWindow) -> None:
        """Append one window of ``method`` (windows must come in video order)."""
        parts = self._methods.get(method)
        if parts is None:
            raise InvalidInputError(f"method {method!r} was not declared for this report")
        if vw.derivative.shape[1:] != self.map_size:
            raise InvalidInputError(f"maps must be {self.map_size}, got {vw.derivative.shape[1:]}")
        for key, dtype in _ARRAYS:
            array = {"d": vw.derivative, "m": vw.magnitude, "e": vw.relevance}[key]
            parts.streams[key].write(_shuffle(np.asarray(array, dtype=dtype)))
        parts.windows.append(
            {
                "length": vw.window.length,
                "first_owned": vw.window.first_owned,
                "num_owned": vw.window.num_owned,
                "frame_start": parts.frames,
                "first_index": vw.window.owned_indices[0],
                "padded": vw.window.padded,
                "d_scale": vw.derivative_scale,
                "m_scale": vw.magnitude_scale,
                "e_scale": vw.relevance_scale,
                "display_max": vw.display_max,
            }
        )
        parts.frames += vw.window.num_owned

    def discard(self) -> None:
        """Close and delete the temporary parts."""
        self._close()
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    def _close(self) -> None:
        self._frames.close()
        for parts in self._methods.values():
            for stream in parts.streams.values():
                stream.close()

    def write(self, path: str | Path, meta: dict[str, Any]) -> Path:
        """Assemble the HTML file at ``path``; ``meta`` adds title, video, model, predictions,
        per-method summaries (``meta["methods"][name]``) and the initial ``sigma``."""
        self._close()
        for parts in self._methods.values():
            if parts.frames != self.frame_count:
                raise InvalidInputError(
                    f"method {parts.name!r} covers {parts.frames} frames but the report has {self.frame_count}"
                )
        path = Path(path)
        method_meta = meta.get("methods", {})
        full = {
            **{k: v for k, v in meta.items() if k != "methods"},
            "format": FORMAT_VERSION,
            "frames": self.frame_count,
            "display": list(self.display),
            "map_size": list(self.map_size),
            "box": list(self.box),
            "colormap": colormap_lut(DIVERGING).tolist(),
            "alpha": ALPHA,
            "gamma": GAMMA,
            "methods": [
                {"name": p.name, "windows": p.windows, **method_meta.get(p.name, {})}
                for p in self._methods.values()
            ],
        }
        try:
            with path.open("w", encoding="utf-8") as out:
                self._write_html(out, full)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}; check the folder is writable") from None
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return path

    def _write_html(self, out: Any, meta: dict[str, Any]) -> None:
        title = html.escape(str(meta.get("title", "motion-relevance report")))
        out.write(
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>\n{_asset('report.css')}\n</style></head>\n<body>\n"
        )
        out.write(_body(meta))
        out.write(f'<script type="application/json" id="mr-meta">{_json_for_script(meta)}</script>\n')
        out.write('<div id="mr-frames" hidden>\n')
        with (self.parts_dir / "frames.txt").open(encoding="ascii") as frames:
            for i, line in enumerate(frames):
                out.write(f'<img alt="" data-i="{i}" src="data:image/jpeg;base64,{line.strip()}">\n')
        out.write("</div>\n")
        for i, parts in enumerate(self._methods.values()):
            for key, _ in _ARRAYS:
                out.write(f'<script type="application/octet-stream" id="mr-{i}-{key}">')
                with parts.streams[key].path.open("rb") as data:
                    while chunk := data.read(3 * 65536):
                        out.write(base64.b64encode(chunk).decode("ascii"))
                out.write("</script>\n")
        out.write(f"<script>\n{_asset('report.js')}\n</script>\n</body></html>\n")


def _fmt_prob(p: float) -> str:
    return f"{100 * p:.1f}%"


def _reliance_block(reliance: Any, meaning: str) -> str:
    """The video's motion reliance with its interval, and a bar per intervention of the evidence
    it removed (inline SVG; units of the window's total evidence, 1 = all of it)."""
    if not isinstance(reliance, dict):
        return ""
    e = html.escape
    effects = {k: v for k, v in (reliance.get("effects") or {}).items() if isinstance(v, (int, float))}
    span = max([1.0, *(abs(v) for v in effects.values())])
    row, width, left = 18, 220, 90
    zero = left + width / 2
    bars = []
    for j, (name, v) in enumerate(effects.items()):
        length = abs(v) / span * (width / 2)
        x = zero if v >= 0 else zero - length
        y = j * row
        bars.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{e(name)}</text>'
            f'<rect x="{x:.1f}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" class="{"pos" if v >= 0 else "neg"}"/>'
            f'<text x="{left + width + 6}" y="{y + 13}">{v:+.2f}</text>'
        )
    svg = (
        f'<svg class="effects" width="{left + width + 50}" height="{row * len(effects) + 4}" '
        f'role="img" aria-label="evidence lost per frame intervention">'
        f'<line x1="{zero}" x2="{zero}" y1="0" y2="{row * len(effects)}" class="axis"/>' + "".join(bars) + "</svg>"
        if effects
        else ""
    )
    return (
        f'<div class="reliance" id="mr-reliance" title="{e(meaning)}"><p><b>motion reliance</b> '
        f'<output id="mr-reliance-score">{100 * float(reliance["score"]):.1f}%</output> '
        f'[{100 * float(reliance["low"]):.1f}, {100 * float(reliance["high"]):.1f}] '
        f'({int(reliance.get("permutations", 0))} frame orders per window): {e(meaning)}. '
        "Evidence lost per intervention, in units of the window's total evidence:</p>"
        f"{svg}</div>"
    )


def _body(meta: dict[str, Any]) -> str:
    """Static HTML skeleton; report.js wires the players, the slider and the plots."""
    e = html.escape
    video = meta.get("video", {})
    target = meta.get("target", {})
    rows = "".join(
        f'<tr class="{"target" if p.get("index") == target.get("index") else ""}">'
        f'<td>{i + 1}</td><td>{e(str(p.get("label", p.get("index"))))}</td>'
        f'<td class="num">{p.get("index")}</td><td class="num">{_fmt_prob(float(p.get("probability", 0)))}</td></tr>'
        for i, p in enumerate(meta.get("predictions", []))
    )
    facts = " · ".join(
        e(s)
        for s in (
            f"model {meta.get('model', '?')}",
            f"{video.get('frames', meta.get('frames', '?'))} frames at {video.get('fps', 0):g} fps",
            f"{video.get('width', '?')}x{video.get('height', '?')} px",
            f"explained class: {target.get('label', target.get('index', '?'))}",
        )
    )
    meanings = meta.get("meanings", {})
    legend = "; ".join(
        f"<b>{e(label)}</b>: {e(str(meanings[key]))}"
        for key, label in (("motion_score", "motion score"), ("motion_share", "motion share (paper)"))
        if key in meanings
    )
    reliance = _reliance_block(meta.get("reliance"), str(meanings.get("motion_reliance", "")))
    sections = []
    for i, m in enumerate(meta["methods"]):
        name = e(m["name"])
        canvases = "".join(
            f'<figure><canvas id="mr-{i}-{kind}" class="player"></canvas><figcaption>{cap}</figcaption></figure>'
            for kind, cap in (
                ("orig", "original"),
                ("base", "base explanation"),
                ("motion", "motion part"),
                ("static", "static part"),
            )
        )
        score = m.get("motion_score")
        shown_score = f"{100 * score:.1f}%" if isinstance(score, (int, float)) else "–"
        python = m.get("motion_share")
        note = (
            f'<span class="note">float32 pipeline at σ={meta.get("sigma", 0):g}: {100 * python:.2f}%</span>'
            if isinstance(python, (int, float))
            else ""
        )
        sections.append(
            f'<section class="method" id="mr-{i}" data-method="{name}">\n'
            f'<h2>{name} <span class="score" title="{e(str(meanings.get("motion_score", "")))}">motion score '
            f'<output id="mr-{i}-score">{shown_score}</output></span>'
            f' <span class="share" title="{e(str(meanings.get("motion_share", "")))}">motion share (paper) '
            f'<output id="mr-{i}-share">…</output></span>'
            f' <span class="maskfrac">mask <output id="mr-{i}-mask">…</output> of voxels</span> {note}</h2>\n'
            f'<div class="players">{canvases}</div>\n'
            f'<canvas id="mr-{i}-plot" class="plot" width="960" height="150"></canvas>\n</section>\n'
        )
    return (
        f'<header><h1>{e(str(meta.get("title", "motion-relevance report")))}</h1><p class="facts">{facts}</p>\n'
        f'<table class="preds"><thead><tr><th>#</th><th>prediction</th><th>class</th><th>probability</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        + reliance
        + (f'<p class="meanings" id="mr-meanings">{legend}</p>' if legend else "")
        + "</header>\n"
        '<div class="controls">'
        '<button id="mr-play" type="button">play</button>'
        '<label>frame <input id="mr-frame" type="range" min="0" max="0" step="1" value="0"> '
        '<output id="mr-frame-label">0</output></label>'
        f'<label>σ <input id="mr-sigma" type="range" min="0" max="{max(4.0, 2 * float(meta.get("sigma", 1))):g}" '
        f'step="0.05" value="{float(meta.get("sigma", 1)):g}"> <output id="mr-sigma-label"></output></label>'
        '<span id="mr-status">loading…</span></div>\n'
        + "".join(sections)
        + '<footer>Motion part: relevance where |temporal Sobel derivative| &gt; σ·std (per clip); '
        "static part: the rest. Colours: red positive, blue negative relevance; opacity grows with size. "
        "The dimmed border is outside the model's crop.</footer>\n"
    )


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ReportData:
    """A report's metadata and, per method, its viewer windows."""

    meta: dict[str, Any]
    windows: dict[str, list[ViewerWindow]]


def _element(text: str, element_id: str) -> str:
    m = re.search(rf'<script[^>]*id="{re.escape(element_id)}"[^>]*>(.*?)</script>', text, re.S)
    if m is None:
        raise InvalidInputError(f"not a motion-relevance report: element {element_id!r} is missing")
    return m.group(1)


def read_report(path: str | Path) -> ReportData:
    """Parse a report written by ``ReportWriter`` back into metadata and ``ViewerWindow``s."""
    text = Path(path).read_text(encoding="utf-8")
    meta = json.loads(_element(text, "mr-meta"))
    h, w = meta["map_size"]
    windows: dict[str, list[ViewerWindow]] = {}
    for i, m in enumerate(meta["methods"]):
        raw = {key: zlib.decompress(base64.b64decode(_element(text, f"mr-{i}-{key}"))) for key, _ in _ARRAYS}
        out: list[ViewerWindow] = []
        d_off = o_off = 0  # in samples; every window's array is shuffled on its own
        for k, win in enumerate(m["windows"]):
            length, owned = win["length"], win["num_owned"]
            first = win["first_index"] - win["first_owned"]
            if win["padded"]:  # loop-padded: the owned frames repeat
                indices = tuple(win["first_index"] + j % owned for j in range(length))
            else:
                indices = tuple(first + j for j in range(length))
            nd, no = length * h * w, owned * h * w
            d = _unshuffle(raw["d"][2 * d_off : 2 * (d_off + nd)], "<u2", nd).reshape(length, h, w)
            mg = _unshuffle(raw["m"][2 * o_off : 2 * (o_off + no)], "<u2", no).reshape(owned, h, w)
            e = _unshuffle(raw["e"][o_off : o_off + no], "i1", no).reshape(owned, h, w)
            d_off += length * h * w
            o_off += owned * h * w
            out.append(
                ViewerWindow(
                    window=ClipWindow(k, indices, win["first_owned"], owned, win["padded"]),
                    derivative=d,
                    derivative_scale=win["d_scale"],
                    magnitude=mg,
                    magnitude_scale=win["m_scale"],
                    relevance=e,
                    relevance_scale=win["e_scale"],
                    display_max=win["display_max"],
                )
            )
        windows[m["name"]] = out
    return ReportData(meta=meta, windows=windows)


__all__ = ["DISPLAY_MAX_SIDE", "ReportData", "ReportWriter", "display_size", "read_report"]
