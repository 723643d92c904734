"""Test-time image preprocessing of SparseDrive (docs/model-notes.md#inputs-and-preprocessing) and the matching
projection update.

Original pipeline per camera: OpenCV BGR uint8 image (1600x900 on nuScenes) -> PIL ``resize`` to
``(int(W*s), int(H*s))`` with s = max(256/H, 704/W) = 0.44 (PIL's default for RGB: bicubic, antialiased) ->
crop box (x0, y0, x0+704, y0+256) with y0 = bottom rows (140) and x0 centred (0) -> BGR->RGB ->
(x - mean) / std -> float32 [3, 256, 704]. The projection becomes ``A @ lidar2img`` with
A = [[s, 0, -x0, 0], [0, s, -y0, 0], [0, 0, 1, 0], [0, 0, 0, 1]].

The resize is Pillow itself on CPU when importable (it comes with torchvision), else (or on request, or on GPU) a
torch integer re-implementation of Pillow's 8-bit resampling that is bit-identical to it (same coefficients, 22-bit
fixed point, horizontal pass rounded to uint8 before the vertical pass). torch's own
``F.interpolate(bicubic, antialias=True)`` differs from Pillow by up to 4/255 (mean 0.14/255), so it is not used.
A maps continuous pixel coordinates in PIL's convention (pixel i covers [i, i+1)); like the original, it ignores
the half-pixel shift (s - 1) / 2 that the integer-centred convention would add.

JPEG on the device (:func:`preprocess_jpegs`, used by the pipeline with ``device: cuda``): the compressed bytes go
to ``torchvision.io.decode_jpeg`` (one batched call; on CUDA it is nvjpeg, reading from pinned host memory), and
the resize/crop/normalisation above runs on the decoded planes where they are, so the float input never visits
the CPU. The resize stays Pillow-identical; the decoder does not: nvjpeg's IDCT and chroma upsampling may differ
from libjpeg-turbo (what OpenCV uses on the CPU path) by a grey level or so, which after the resize is at most a
couple of levels (~0.03 in normalised units). torchvision's CPU decoder is libjpeg-turbo too (identical to
OpenCV's decode in the tests here, though two libjpeg builds may differ by a level). An image the device decoder
refuses is decoded again with OpenCV on the CPU (today's decoder, so the same images decode as before) and only
one that OpenCV refuses too is an error (:class:`JpegDecodeError`, naming the image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMG_MEAN",
    "IMG_STD",
    "ImageTransform",
    "JpegDecodeError",
    "decode_bgr",
    "decode_on_device",
    "denormalize_image",
    "decode_jpegs",
    "jpeg_size",
    "pil_bicubic_resize",
    "preprocess_image",
    "preprocess_images",
    "preprocess_jpegs",
    "inference_transform",
    "update_projection",
]

IMG_MEAN = (123.675, 116.28, 103.53)  # RGB
IMG_STD = (58.395, 57.12, 57.375)  # RGB
INPUT_HW = (256, 704)  # network input (H, W)
_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images

ImageLike = Union[np.ndarray, Tensor]


@dataclass(frozen=True)
class ImageTransform:
    """Deterministic resize-then-crop; sizes are (H, W), crop is (x0, y0, x1, y1) in the resized image."""

    src_hw: tuple[int, int]
    resize: float
    resized_hw: tuple[int, int]
    crop: tuple[int, int, int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.crop[3] - self.crop[1], self.crop[2] - self.crop[0])

    def matrix(self) -> np.ndarray:
        """[4, 4] float64 A such that A @ lidar2img projects into the transformed image."""
        mat = np.eye(4)
        mat[0, 0] = mat[1, 1] = self.resize
        mat[0, 2] = -self.crop[0]  # column 2 multiplies the depth row: pixel shift after the division
        mat[1, 2] = -self.crop[1]
        return mat


def inference_transform(src_hw: tuple[int, int] = (900, 1600), out_hw: tuple[int, int] = INPUT_HW) -> ImageTransform:
    """The original's test-time resize/crop for an image of ``src_hw``: scale to cover ``out_hw``, keep the bottom
    rows and the horizontal centre (0.44, crop (0, 140, 704, 396) for nuScenes)."""
    src_h, src_w = src_hw
    out_h, out_w = out_hw
    if min(src_h, src_w, out_h, out_w) <= 0:
        raise ValueError(f"image sizes must be positive, got src_hw={src_hw}, out_hw={out_hw}")
    resize = max(out_h / src_h, out_w / src_w)
    resized_w, resized_h = int(src_w * resize), int(src_h * resize)  # int() truncation as in the original
    crop_y = resized_h - out_h
    crop_x = int(max(0, resized_w - out_w) / 2)
    if crop_y < 0 or resized_w < out_w:
        raise ValueError(f"resized image {resized_h}x{resized_w} is smaller than the crop {out_h}x{out_w}")
    return ImageTransform(src_hw, resize, (resized_h, resized_w), (crop_x, crop_y, crop_x + out_w, crop_y + out_h))


def update_projection(lidar2img: Union[np.ndarray, Tensor], transform: ImageTransform) -> Union[np.ndarray, Tensor]:
    """``[..., 4, 4]`` lidar->image (source pixels) -> lidar->image of the transformed image (A @ lidar2img)."""
    if lidar2img.shape[-2:] != (4, 4):
        raise ValueError(f"lidar2img must be [..., 4, 4], got shape {tuple(lidar2img.shape)}")
    mat = transform.matrix()
    if isinstance(lidar2img, Tensor):
        return torch.as_tensor(mat, dtype=lidar2img.dtype, device=lidar2img.device) @ lidar2img
    return mat.astype(lidar2img.dtype, copy=False) @ lidar2img


# --------------------------------------------------------------------------------------- Pillow-exact resize


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _pil_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bicubic filter (full input box).

    Returns:
        first [out] int64 first input index of each output, taps [out, ksize] int64 fixed-point weights.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    first = np.zeros(out_size, dtype=np.int64)
    taps = np.zeros((out_size, ksize), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_bicubic((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = sum(weights)
        for x, w in enumerate(weights):
            w = w / total if total != 0.0 else w
            taps[xx, x] = int(-0.5 + w * (1 << _PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << _PRECISION_BITS))
        first[xx] = xmin
    return first, taps


def _resample_rows(image: Tensor, first: np.ndarray, taps: np.ndarray) -> Tensor:
    """Resample dim -2: [..., in, K] uint8 -> [..., out, K] uint8 with Pillow's fixed-point sums and clip8 rounding.

    Works on whole rows (contiguous gathers); callers transpose so that the resampled axis is dim -2.
    """
    in_size = image.shape[-2]
    acc = torch.full((*image.shape[:-2], len(first), image.shape[-1]), 1 << (_PRECISION_BITS - 1),
                     dtype=torch.int32, device=image.device)
    first_t = torch.as_tensor(first, device=image.device)
    taps_t = torch.as_tensor(taps, dtype=torch.int32, device=image.device)
    for tap in range(taps.shape[1]):
        if not taps[:, tap].any():
            continue
        index = (first_t + tap).clamp(max=in_size - 1)  # zero-weight taps may point past the end
        acc.addcmul_(image.index_select(-2, index).to(torch.int32), taps_t[:, tap, None])
    return (acc >> _PRECISION_BITS).clamp_(0, 255).to(torch.uint8)  # >> floors, like Pillow's clip8


def pil_bicubic_resize(image: Tensor, out_hw: tuple[int, int], rows: tuple[int, int] | None = None) -> Tensor:
    """Bit-exact ``PIL.Image.resize((W, H), BICUBIC)`` of ``[..., H, W]`` uint8 images (channels independent).

    Args:
        rows: optional (first, last) output rows to return (the vertical pass runs only for them and the
            horizontal pass only on the input rows they need).
    """
    out_h, out_w = out_hw
    x_first, x_taps = _pil_coefficients(image.shape[-1], out_w)
    y_first, y_taps = _pil_coefficients(image.shape[-2], out_h)
    row_start, row_stop = rows if rows is not None else (0, out_h)
    y_first, y_taps = y_first[row_start:row_stop], y_taps[row_start:row_stop]
    in_start = int(y_first.min())
    in_stop = min(int((y_first + y_taps.shape[1]).max()), image.shape[-2])
    columns = image[..., in_start:in_stop, :].transpose(-1, -2).contiguous()  # [..., W, h]
    wide = _resample_rows(columns, x_first, x_taps)  # horizontal pass first, as Pillow: [..., out_w, h]
    return _resample_rows(wide.transpose(-1, -2).contiguous(), y_first - in_start, y_taps)  # [..., rows, out_w]


# --------------------------------------------------------------------------------------------- public API


def _as_uint8_hwc(image: ImageLike, expected_hw: tuple[int, int] | None) -> Tensor:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (as OpenCV decodes), got dtype {image.dtype}")
        image = torch.from_numpy(np.ascontiguousarray(image))
    elif not isinstance(image, Tensor):
        raise ValueError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise ValueError(f"image must be uint8 (as OpenCV decodes), got dtype {image.dtype}")
    if image.dim() != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] BGR, got shape {tuple(image.shape)}")
    if expected_hw is not None and tuple(image.shape[:2]) != tuple(expected_hw):
        raise ValueError(
            f"image is {image.shape[0]}x{image.shape[1]} (HxW), expected {expected_hw[0]}x{expected_hw[1]}"
        )
    return image


def _normalize(rgb_uint8: Tensor) -> Tensor:
    """[..., 3, H, W] uint8 RGB -> float32 (x - mean) * (1 / std), as mmcv.imnormalize."""
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32, device=rgb_uint8.device)[:, None, None]
    inv_std = torch.tensor([1.0 / s for s in IMG_STD], dtype=torch.float32, device=rgb_uint8.device)[:, None, None]
    return (rgb_uint8.to(torch.float32) - mean) * inv_std


def denormalize_image(image: Tensor) -> Tensor:
    """[..., 3, H, W] normalised RGB float -> float pixel values 0..255 RGB (inverse of the normalisation)."""
    mean = torch.tensor(IMG_MEAN, dtype=image.dtype, device=image.device)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=image.dtype, device=image.device)[:, None, None]
    return image * std + mean


def _pil_available() -> bool:
    try:
        import PIL.Image  # noqa: F401  (Pillow comes with torchvision)
    except ImportError:
        return False
    return True


def _resize_crop_pil(batch: Tensor, transform: ImageTransform) -> Tensor:
    from PIL import Image

    out = []
    for image in batch.numpy():
        resized = Image.fromarray(image).resize(transform.resized_hw[::-1], Image.Resampling.BICUBIC)
        out.append(np.asarray(resized.crop(transform.crop)))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)  # [N, 3, h, w] BGR


def _resize_crop_planes(planes: Tensor, transform: ImageTransform) -> Tensor:
    """[N, C, H, W] uint8 -> [N, C, h, w] uint8 resized (Pillow-identical torch implementation) and cropped."""
    x0, y0, x1, y1 = transform.crop
    return pil_bicubic_resize(planes, transform.resized_hw, rows=(y0, y1))[..., x0:x1]


def _resize_crop_torch(batch: Tensor, transform: ImageTransform) -> Tensor:
    return _resize_crop_planes(batch.permute(0, 3, 1, 2), transform)  # [N, 3, h, w] BGR


def preprocess_images(images: Sequence[ImageLike] | ImageLike, transform: ImageTransform | None = None,
                      device: torch.device | str | None = None, backend: str = "auto") -> Tensor:
    """N BGR uint8 images [H, W, 3] (all the same size) -> [N, 3, 256, 704] float32 normalised RGB.

    Args:
        images: a sequence of [H, W, 3] arrays/tensors or one [N, H, W, 3] array/tensor, BGR as OpenCV decodes.
        transform: defaults to :func:`inference_transform` of the first image's size; every image must match it.
        device: where to compute and return (defaults to the images' device; CPU for numpy input).
        backend: "pil" (Pillow itself, fastest on CPU), "torch" (bit-identical torch integer implementation, runs
            on any device), or "auto" (Pillow for CPU work when importable, else torch).
    """
    if backend not in ("auto", "pil", "torch"):
        raise ValueError(f"backend must be 'auto', 'pil' or 'torch', got {backend!r}")
    if isinstance(images, (np.ndarray, Tensor)) and images.ndim == 4:
        images = list(images)
    if len(images) == 0:
        raise ValueError("preprocess_images needs at least one image, got none")
    first = _as_uint8_hwc(images[0], None)
    transform = transform or inference_transform((int(first.shape[0]), int(first.shape[1])))
    batch = torch.stack([_as_uint8_hwc(img, transform.src_hw) for img in images])  # [N, H, W, 3] BGR
    device = torch.device(device) if device is not None else batch.device
    use_pil = backend == "pil" or (backend == "auto" and batch.device.type == "cpu" and _pil_available())
    if use_pil:
        cropped = _resize_crop_pil(batch.cpu(), transform).to(device)
    else:
        cropped = _resize_crop_torch(batch.to(device), transform)
    return _normalize(cropped.flip(1))  # BGR -> RGB, [N, 3, 256, 704]


def preprocess_image(image: ImageLike, transform: ImageTransform | None = None, backend: str = "auto") -> Tensor:
    """One BGR uint8 [H, W, 3] image -> [3, 256, 704] float32 normalised RGB (see :func:`preprocess_images`)."""
    return preprocess_images([image], transform, backend=backend)[0]


# ------------------------------------------------------------------------------------------ JPEG on the device

JpegLike = Union[np.ndarray, bytes, bytearray, memoryview]
GPU_DECODE_MODES = ("auto", "on", "off")
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4 (DHT), C8 (JPG), CC (DAC) are not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class JpegDecodeError(ValueError):
    """A JPEG that cannot be read; ``index`` is its position in the batch (SparseDrivePipeline.build_inputs: the
    camera's index in the request; None when not known)."""

    def __init__(self, text: str, index: int | None = None):
        super().__init__(text)
        self.index = index


def decode_on_device(mode: str, device: torch.device | str) -> bool:
    """Whether JPEG bytes are decoded (and preprocessed) by :func:`preprocess_jpegs` on ``device``: ``mode`` is
    ``on``, ``off`` or ``auto`` (on for CUDA devices only: on a CPU OpenCV + Pillow is the faster path)."""
    if mode not in GPU_DECODE_MODES:
        raise ValueError(f"gpu_decode must be one of {', '.join(GPU_DECODE_MODES)}, got {mode!r}")
    return mode == "on" or (mode == "auto" and torch.device(device).type == "cuda")


def _byte_array(data: JpegLike) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ValueError(f"JPEG data must be a 1-D uint8 array, got {data.dtype} {data.shape}")
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    raise ValueError(f"JPEG data must be bytes or a uint8 array, got {type(data).__name__}")


def jpeg_size(data: JpegLike) -> tuple[int, int]:
    """(H, W) of a JPEG from its frame header (SOFn marker), reading only the header segments.

    Raises JpegDecodeError when the data does not start with a well-formed JPEG header (no SOI, a broken marker
    or segment length, the data ending before the frame header, a zero or undefined size). It does not check the
    entropy-coded data after the header: a JPEG truncated there passes and fails only when decoded.
    """
    buf = _byte_array(data)
    n = buf.size
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        raise JpegDecodeError(f"not a JPEG: {n} bytes without the SOI marker")
    pos = 2
    while True:
        if pos >= n:
            raise JpegDecodeError(f"JPEG header truncated: no frame header in {n} bytes")
        if buf[pos] != 0xFF:
            raise JpegDecodeError(f"corrupt JPEG header: byte {pos} is 0x{int(buf[pos]):02x}, expected a marker")
        while pos < n and buf[pos] == 0xFF:  # the marker's 0xFF and any fill bytes
            pos += 1
        if pos >= n:
            raise JpegDecodeError(f"JPEG header truncated: no frame header in {n} bytes")
        marker = int(buf[pos])
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length field
            continue
        if marker in (0x00, 0xD8, 0xD9, 0xDA):  # stuffed byte, second SOI, EOI, start of scan before any frame
            raise JpegDecodeError(f"corrupt JPEG header: marker 0xff{marker:02x} at byte {pos - 1} before the "
                                  f"frame header")
        if pos + 2 > n:
            raise JpegDecodeError(f"JPEG header truncated: no frame header in {n} bytes")
        length = int(buf[pos]) << 8 | int(buf[pos + 1])
        if length < 2 or pos + length > n:
            raise JpegDecodeError(f"corrupt JPEG header: segment 0xff{marker:02x} at byte {pos - 2} has length "
                                  f"{length} ({n - pos} bytes left)")
        if marker in _SOF_MARKERS:
            seg = buf[pos:pos + length].astype(np.int64)
            if length < 8:
                raise JpegDecodeError(f"corrupt JPEG frame header: length {length}")
            height, width, components = int(seg[3] << 8 | seg[4]), int(seg[5] << 8 | seg[6]), int(seg[7])
            if components not in (1, 3, 4) or length != 8 + 3 * components:
                raise JpegDecodeError(f"corrupt JPEG frame header: {components} components in {length} bytes")
            if height == 0 or width == 0:
                raise JpegDecodeError(f"JPEG frame header gives no size ({width}x{height})")
            return height, width
        pos += length


def _host_tensor(data: np.ndarray, pinned: bool) -> Tensor:
    """1-D uint8 CPU tensor of the bytes; in page-locked memory when ``pinned`` (one copy, straight into it)."""
    if pinned:
        out = torch.empty(data.size, dtype=torch.uint8, pin_memory=True)
        out.numpy()[:] = data
        return out
    return torch.from_numpy(data if data.flags.writeable else data.copy())


def _decode_jpeg(data: Tensor | list[Tensor], device: torch.device):
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its image decoders in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_bgr(data: JpegLike, index: int | None = None) -> np.ndarray:
    """JPEG bytes -> BGR uint8 [H, W, 3] with OpenCV on the CPU (the node's CPU decoder); raises JpegDecodeError
    (with ``index``) when they do not decode."""
    import cv2

    buf = _byte_array(data)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise JpegDecodeError(f"cannot decode {buf.size} bytes of JPEG", index)
    return bgr


def _decode_one(index: int, data: Tensor, device: torch.device) -> Tensor:
    """One JPEG on the device decoder, else with OpenCV on the CPU (which reads some JPEGs, e.g. ones with a
    damaged tail, that nvjpeg and torchvision refuse); [3, H, W] uint8 RGB on ``device``."""
    try:
        return _decode_jpeg(data, device)
    except RuntimeError as exc:
        try:
            bgr = decode_bgr(data.numpy(), index)
        except JpegDecodeError as err:
            raise JpegDecodeError(f"{err}: {exc}", index) from None
        rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)
        if device.type == "cuda":
            rgb = rgb.pin_memory()
        return rgb.to(device, non_blocking=True)


def decode_jpegs(jpegs: Sequence[JpegLike], device: torch.device | str = "cpu") -> list[Tensor]:
    """JPEG byte buffers -> [3, H, W] uint8 RGB tensors on ``device``, in one batched ``decode_jpeg`` call (nvjpeg
    on CUDA, from pinned host buffers). When the batch fails, each image is decoded alone and one the decoder
    refuses goes to OpenCV on the CPU; raises JpegDecodeError (with its index) for one that OpenCV refuses too."""
    device = torch.device(device)
    if len(jpegs) == 0:
        raise ValueError("decode_jpegs needs at least one JPEG, got none")
    host = [_host_tensor(_byte_array(j), pinned=device.type == "cuda") for j in jpegs]
    try:
        return list(_decode_jpeg(host, device))
    except RuntimeError:
        return [_decode_one(i, data, device) for i, data in enumerate(host)]


def preprocess_jpegs(jpegs: Sequence[JpegLike], transforms: Sequence[ImageTransform] | None = None,
                     device: torch.device | str = "cpu") -> Tensor:
    """N JPEG byte buffers -> [N, 3, h, w] float32 normalised RGB on ``device``, as :func:`preprocess_images` of
    the OpenCV-decoded images: decode on the device (:func:`decode_jpegs`), the Pillow-identical torch resize and
    the crop of each image's transform, mean/std. Images may differ in size (one resize per distinct transform);
    the transforms must share the output size.

    Args:
        transforms: one per JPEG; defaults to :func:`inference_transform` of each JPEG's header size.
    """
    device = torch.device(device)
    if transforms is None:
        transforms = [inference_transform(jpeg_size(j)) for j in jpegs]
    if len(transforms) != len(jpegs):
        raise ValueError(f"need one transform per JPEG, got {len(transforms)} for {len(jpegs)}")
    if len({t.out_hw for t in transforms}) > 1:
        raise ValueError(f"transforms must share the output size, got {sorted({t.out_hw for t in transforms})}")
    planes = decode_jpegs(jpegs, device)
    groups: dict[ImageTransform, list[int]] = {}
    for i, (image, transform) in enumerate(zip(planes, transforms)):
        if tuple(image.shape[-2:]) != tuple(transform.src_hw):
            raise JpegDecodeError(f"JPEG decodes to {image.shape[-2]}x{image.shape[-1]} (HxW), its header says "
                                  f"{transform.src_hw[0]}x{transform.src_hw[1]}", i)
        groups.setdefault(transform, []).append(i)
    out = torch.empty(len(planes), 3, *transforms[0].out_hw, dtype=torch.float32, device=device)
    for transform, index in groups.items():
        cropped = _resize_crop_planes(torch.stack([planes[i] for i in index]), transform)  # RGB already
        out[torch.as_tensor(index, device=device)] = _normalize(cropped)
    return out
