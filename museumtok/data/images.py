"""Loading images safely: any file a visitor uploads becomes an RGB image or a clear error.

Handles EXIF orientation, every Pillow mode museum files come in (L, LA, P, RGBA, CMYK, I;16, I, F),
animated files (first frame), truncated files, non-images, decompression bombs and tiny images.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest image accepted, in pixels (width * height). Pillow's own bomb guard is 89 MP.
MAX_PIXELS = 40_000_000
#: Smallest side accepted, in pixels.
MIN_SIDE = 16
#: Largest upload accepted, in bytes.
MAX_FILE_BYTES = 50 * 1024 * 1024

ImageLike = Union[str, Path, bytes, Image.Image, np.ndarray, torch.Tensor]


class ImageLoadError(ValueError):
    """An input that cannot be used as an image; ``str(err)`` is a message fit for a visitor (English).
    ``key`` and ``params`` name the message so the app can say it in the visitor's language
    (:func:`museumtok.app.i18n.error_text`)."""

    def __init__(self, message: str, key: str | None = None, **params):
        super().__init__(message)
        self.key, self.params = key, params


@dataclass
class LoadedImage:
    image: Image.Image          # RGB, orientation applied
    notes: list[str]            # what was done to it (e.g. "converted from CMYK")
    source_mode: str
    n_frames: int = 1


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0
        else:  # 32-bit int or float: stretch the actual range, these have no fixed white point
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        arr8 = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        notes.append(f"converted {mode} (high bit depth) to 8-bit")
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        notes.append("converted palette image to RGB")
        if img.mode == "RGB":
            return img
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"composited {mode} transparency over white")
        return Image.alpha_composite(white, rgba).convert("RGB")
    notes.append(f"converted {mode} to RGB")
    return img.convert("RGB")


def load_image(
    source: ImageLike,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_bytes: int = MAX_FILE_BYTES,
) -> LoadedImage:
    """Open ``source`` (path, bytes, PIL image, HWC uint8 array or CHW float tensor) as RGB.

    Raises :class:`ImageLoadError` with a plain-language message for anything unusable.
    """
    notes: list[str] = []
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ImageLoadError(f"expected a (3, H, W) tensor, got shape {tuple(source.shape)}")
        source = Image.fromarray(
            (t.expand(3, -1, -1).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy(), "RGB"
        )
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            raise ImageLoadError(f"expected a uint8 array, got {arr.dtype}")
        source = Image.fromarray(arr)
    if isinstance(source, Image.Image):
        img = source
        _check_size(img.size, max_pixels, min_side)
    else:
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise ImageLoadError(f"no such file: {path}", "no_file")
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageLoadError(
                    f"the file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB",
                    "file_too_big", mb=f"{size / 2**20:.1f}", limit=f"{max_bytes / 2**20:.0f}")
            data = path.read_bytes()
        elif isinstance(source, (bytes, bytearray)):
            data = bytes(source)
            if len(data) > max_bytes:
                raise ImageLoadError(
                    f"the file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB",
                    "file_too_big", mb=f"{len(data) / 2**20:.1f}", limit=f"{max_bytes / 2**20:.0f}")
        else:
            raise ImageLoadError(f"cannot read an image from a {type(source).__name__}")
        if len(data) == 0:
            raise ImageLoadError("the file is empty", "empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageLoadError(
                "this file is not an image Pillow can read (expected JPEG, PNG, WebP, GIF, TIFF, BMP...)", "not_image"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageLoadError(f"the image is too large to open safely ({err})", "bomb") from None
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ImageLoadError(f"the image file is damaged or truncated ({err})", "damaged") from None
        _check_size(img.size, max_pixels, min_side)
        n_frames = getattr(img, "n_frames", 1)
        if n_frames > 1:
            notes.append(f"animated image with {n_frames} frames: using the first frame")
            img.seek(0)
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ImageLoadError(f"the image file is damaged or truncated ({err})", "damaged") from None
    n_frames = getattr(img, "n_frames", 1)
    source_mode = img.mode
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not stop the image
        oriented = img
        notes.append("ignored an unreadable EXIF block")
    if oriented is not None and oriented is not img:
        if oriented.size != img.size or _exif_orientation(img) not in (None, 1):
            notes.append("applied EXIF orientation")
        img = oriented
    rgb = _to_rgb(img, notes)
    if rgb is img:
        rgb = img.copy()
    return LoadedImage(rgb, notes, source_mode, n_frames)


def _exif_orientation(img: Image.Image):
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None


def _check_size(size: tuple[int, int], max_pixels: int, min_side: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageLoadError(
            f"the image is {w}×{h} = {w * h / 1e6:.1f} megapixels; the limit is {max_pixels / 1e6:.0f} megapixels",
            "too_many_pixels", w=w, h=h, mp=f"{w * h / 1e6:.1f}", limit=f"{max_pixels / 1e6:.0f}")
    if min(w, h) < min_side:
        raise ImageLoadError(f"the image is {w}×{h} pixels; each side must be at least {min_side} pixels",
                             "too_small", w=w, h=h, min=min_side)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float tensor in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) float tensor in [0, 1] -> RGB PIL image (rounded to 8 bits)."""
    if x.ndim == 4:
        x = x[0]
    arr = (x.detach().cpu().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr, "RGB")


def to_uint8_grid(x: torch.Tensor) -> torch.Tensor:
    """Round a [0,1] image to the 8-bit grid it would be displayed or saved on."""
    return (x.clamp(0, 1) * 255.0).round() / 255.0


@dataclass(frozen=True)
class WorkingImage:
    """The square image a tokenizer sees, and where it came from in the original."""

    x: torch.Tensor                      # (3, S, S) float in [0, 1]
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in the original's pixels
    original_size: tuple[int, int]       # (width, height) of the original

    @property
    def size(self) -> int:
        return self.x.shape[-1]

    def to_original(self, box_xyxy: torch.Tensor) -> torch.Tensor:
        """Map boxes (N, 4) in working pixels to the original image's pixels."""
        l, t, r, b = self.crop_box
        s = (r - l) / self.size
        out = box_xyxy.to(torch.float64) * s
        out[:, 0::2] += l
        out[:, 1::2] += t
        return out.round().long()


def working_image(img: Image.Image, size: int) -> WorkingImage:
    """Centre square crop of ``img`` resized to ``size``×``size`` (Lanczos with antialiasing).

    This is the evaluation crop used everywhere (app, bench, held-out metrics), so a tokenizer is
    always judged on the same pixels it was given.
    """
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    box = (left, top, left + s, top + s)
    crop = img.crop(box)
    if s != size:
        crop = crop.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return WorkingImage(pil_to_tensor(crop), box, (w, h))


def as_pil(source: ImageLike) -> Image.Image:
    """Any accepted image input as an RGB PIL image (see :func:`load_image`)."""
    if isinstance(source, Image.Image) and source.mode == "RGB":
        return source
    return load_image(source).image
