"""Test-time image preprocessing: transform geometry, Pillow parity, normalisation and projection update."""

import numpy as np
import pytest
import torch

from sparsedrive_ros.model.preprocess import (
    IMG_MEAN,
    IMG_STD,
    denormalize_image,
    inference_transform,
    pil_bicubic_resize,
    preprocess_image,
    preprocess_images,
    update_projection,
)

try:
    from PIL import Image
except ImportError:  # pragma: no cover - Pillow ships with torchvision
    Image = None
needs_pil = pytest.mark.skipif(Image is None, reason="Pillow not importable")


def _textured_image(height, width, seed=0, noise=25.0):
    """BGR uint8 test image: smooth colour waves, Gaussian noise of std ``noise`` grey levels, a saturated patch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 127 + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + rng.normal(0, noise, (height, width))
    img = base[..., None] + np.array([0.0, 30.0, -30.0])
    img[height // 3: height // 2, width // 2: width // 2 + 20] = 255  # hard edges
    return np.clip(img, 0, 255).astype(np.uint8)


def test_nuscenes_transform_matches_spec():
    transform = inference_transform((900, 1600))
    assert transform.resize == pytest.approx(0.44, abs=1e-15)
    assert transform.resized_hw == (396, 704)
    assert transform.crop == (0, 140, 704, 396) and transform.out_hw == (256, 704)
    expected = np.array([[0.44, 0, 0, 0], [0, 0.44, -140, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(transform.matrix(), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "src_hw, resized_hw, crop",
    [
        ((1080, 1920), (396, 704), (0, 140, 704, 396)),
        ((960, 1280), (528, 704), (0, 272, 704, 528)),  # 4:3 keeps the bottom rows
        ((900, 3200), (256, 910), (103, 0, 807, 256)),  # very wide: centred horizontally
        ((480, 640), (528, 704), (0, 272, 704, 528)),  # upscaling
    ],
)
def test_transform_for_other_sizes(src_hw, resized_hw, crop):
    transform = inference_transform(src_hw)
    assert transform.resized_hw == resized_hw and transform.crop == crop


@needs_pil
@pytest.mark.parametrize("src_hw, out_hw", [((97, 131), (50, 64)), ((30, 40), (53, 71)), ((64, 48), (64, 20))])
def test_torch_resize_is_bit_identical_to_pillow(src_hw, out_hw):
    img = _textured_image(*src_hw, seed=1)
    want = np.asarray(Image.fromarray(img).resize(out_hw[::-1], Image.Resampling.BICUBIC))
    got = pil_bicubic_resize(torch.from_numpy(img).permute(2, 0, 1), out_hw).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, want)


@needs_pil
def test_backends_agree_on_a_full_nuscenes_frame():
    images = np.stack([_textured_image(900, 1600, seed=2), _textured_image(900, 1600, seed=3)])
    via_pil = preprocess_images(images, backend="pil")
    via_torch = preprocess_images(images, backend="torch")
    assert via_pil.shape == (2, 3, 256, 704) and via_pil.dtype == torch.float32
    assert torch.equal(via_pil, via_torch)


def test_normalisation_round_trip_and_channel_order():
    bgr = np.zeros((900, 1600, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's BGR order
    bgr[..., 1] = 17
    out = preprocess_image(bgr, backend="torch")
    expected = [(0 - IMG_MEAN[0]) / IMG_STD[0], (17 - IMG_MEAN[1]) / IMG_STD[1], (255 - IMG_MEAN[2]) / IMG_STD[2]]
    for channel, value in enumerate(expected):
        torch.testing.assert_close(out[channel], torch.full((256, 704), value), rtol=0, atol=1e-5)
    img = _textured_image(900, 1600, seed=4)
    recovered = denormalize_image(preprocess_image(img))  # [3, 256, 704] RGB 0..255
    assert torch.allclose(recovered, recovered.round(), atol=1e-3)  # integer pixel values come back
    crop_bgr = pil_bicubic_resize(torch.from_numpy(img).permute(2, 0, 1), (396, 704), rows=(140, 396))
    torch.testing.assert_close(recovered, crop_bgr.flip(0).float(), rtol=0, atol=1e-3)


def _blob_image(u, v, sigma=12.0):
    """Gaussian blob centred at continuous pixel (u, v), pixel i covering [i, i + 1)."""
    yy, xx = np.mgrid[0:900, 0:1600]
    blob = 20 + 200 * np.exp(-((xx + 0.5 - u) ** 2 + (yy + 0.5 - v) ** 2) / (2 * sigma**2))
    return np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(gray):
    weights = (gray - gray.min()).clamp(min=0)
    yy, xx = torch.meshgrid(torch.arange(gray.shape[0]) + 0.5, torch.arange(gray.shape[1]) + 0.5, indexing="ij")
    return float((weights * xx).sum() / weights.sum()), float((weights * yy).sum() / weights.sum())


def test_projection_update_follows_the_pixels():
    # nuScenes-like front camera: intrinsics of the 1600x900 image, lidar (x right, y forward, z up) -> camera.
    intrinsics = np.array([[1266.4, 0, 816.3, 0], [0, 1266.4, 491.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    lidar2cam = np.array([[1.0, 0, 0, 0.01], [0, 0, -1, -0.3], [0, 1, 0, -0.5], [0, 0, 0, 1]])
    lidar2img = intrinsics @ lidar2cam
    point = np.array([3.2, 20.0, -1.5, 1.0])  # lidar frame, in front of the camera
    row = lidar2img @ point
    u, v = row[0] / row[2], row[1] / row[2]
    assert 0 < u < 1600 and 340 < v < 880  # inside the kept crop
    transform = inference_transform((900, 1600))
    projected = update_projection(torch.tensor(lidar2img)[None].repeat(6, 1, 1), transform)[0].numpy() @ point
    expected_uv = (projected[0] / projected[2], projected[1] / projected[2])
    for backend in ("torch", "pil") if Image is not None else ("torch",):
        gray = denormalize_image(preprocess_images([_blob_image(u, v)], backend=backend)[0])[0]
        got_u, got_v = _centroid(gray)
        assert abs(got_u - expected_uv[0]) < 0.05 and abs(got_v - expected_uv[1]) < 0.05, (backend, got_u, got_v)
    np.testing.assert_allclose(update_projection(lidar2img, transform), transform.matrix() @ lidar2img)


@pytest.mark.parametrize(
    "images, match",
    [
        ([np.zeros((900, 1600, 3), dtype=np.float32)], "uint8"),
        ([np.zeros((900, 1600), dtype=np.uint8)], r"\[H, W, 3\]"),
        ([np.zeros((900, 1600, 3), dtype=np.uint8), np.zeros((720, 1280, 3), dtype=np.uint8)], "720x1280"),
        ([], "at least one"),
    ],
)
def test_bad_images_raise_value_error(images, match):
    with pytest.raises(ValueError, match=match):
        preprocess_images(images)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="backend"):
        preprocess_images([np.zeros((900, 1600, 3), dtype=np.uint8)], backend="cv2")
    with pytest.raises(ValueError, match="4, 4"):
        update_projection(np.eye(3), inference_transform((900, 1600)))
    with pytest.raises(ValueError, match="positive"):
        inference_transform((0, 1600))
