"""JPEG decoding and preprocessing on the model's device (PipelineConfig.gpu_decode, model/preprocess.py): the
JPEG path against OpenCV + preprocess_image, the header parser, build_inputs on the JPEG path, and the CUDA decode
where a GPU exists.

Tolerance: the resize is Pillow-identical on both paths, so only the decoders can differ. Two libjpeg-turbo builds
(OpenCV's, torchvision's) or nvjpeg may disagree by a grey level on some pixels (IDCT and chroma upsampling
rounding). The bicubic resize sums taps whose absolute weights add up to about 1.1 per pass and rounds after each
of its two passes, so a one-level input difference can become at most 3 levels after it; we allow 3 levels
(3 / 57.12 = 0.053 in normalised units) at any pixel and 0.25 levels on average. On this machine's CPU the two
decoders agree exactly and the test reports (and checks) that too.
"""
import cv2
import numpy as np
import pytest
import torch
from test_preprocess import _textured_image

from sparsedrive_ros.model import preprocess
from sparsedrive_ros.model.preprocess import (
    JpegDecodeError,
    decode_jpegs,
    decode_on_device,
    denormalize_image,
    inference_transform,
    jpeg_size,
    preprocess_image,
    preprocess_jpegs,
)
from sparsedrive_ros.model.sparsedrive import build_sparsedrive, stage_config
from sparsedrive_ros.runtime.pipeline import FrameRequest, PipelineConfig, SparseDrivePipeline

MAX_LEVELS = 3.0    # grey levels, any pixel (see the module docstring)
MEAN_LEVELS = 0.25  # grey levels, mean over the image
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _image(height, width, seed=0):
    return _textured_image(height, width, seed, noise=20.0)


def _jpeg(image, quality=90, **flags):
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    for key, value in flags.items():
        params += [getattr(cv2, key), value]
    ok, buf = cv2.imencode(".jpg", image, params)
    assert ok
    return buf.ravel()  # uint8 [n], as rosbags and the node hand it over


def _levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of two normalised tensors in grey levels."""
    return (denormalize_image(a.cpu().double()) - denormalize_image(b.cpu().double())).abs()


def _assert_close(a, b):
    diff = _levels(a, b)
    assert diff.max() <= MAX_LEVELS and diff.mean() <= MEAN_LEVELS, (float(diff.max()), float(diff.mean()))


# ------------------------------------------------------------------------------------------------ preprocess


@pytest.mark.parametrize("src_hw,flags", [
    ((900, 1600), {}),                                                                   # nuScenes, 4:2:0
    ((450, 800), {"IMWRITE_JPEG_SAMPLING_FACTOR": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444}),
    ((450, 800), {"IMWRITE_JPEG_PROGRESSIVE": 1}),
])
def test_jpeg_path_equals_opencv_decode_plus_preprocess_image(src_hw, flags):
    image = _image(*src_hw)
    data = _jpeg(image, **flags)
    transform = inference_transform(src_hw)
    ref = preprocess_image(cv2.imdecode(data, cv2.IMREAD_COLOR), transform)
    out = preprocess_jpegs([data, data.tobytes()], [transform, transform], "cpu")
    assert out.shape == (2, 3, 256, 704) and out.dtype == torch.float32
    _assert_close(out[0], ref)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)  # bytes and arrays alike
    # The assumption behind the tolerance: the decoders differ by at most one level (here: not at all).
    decoded = decode_jpegs([data])[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(decoded - cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]).max() <= 1
    assert float(_levels(out[0], ref).max()) == 0.0  # this machine: torchvision's and OpenCV's libjpeg agree


def test_jpeg_path_mixes_sizes_and_reads_grayscale():
    colour, grey = _image(450, 800), _image(900, 1600, seed=1)[..., 1]
    jpegs = [_jpeg(colour), _jpeg(grey)]
    out = preprocess_jpegs(jpegs)  # transforms from the headers
    for k, data in enumerate(jpegs):
        ref = preprocess_image(cv2.imdecode(data, cv2.IMREAD_COLOR), inference_transform(jpeg_size(data)))
        _assert_close(out[k], ref)
    grey_levels = denormalize_image(out[1].double()).round()
    assert torch.equal(grey_levels[0], grey_levels[1]) and torch.equal(grey_levels[0], grey_levels[2])


def test_decoder_failure_falls_back_to_opencv_and_names_the_broken_image(monkeypatch):
    data = _jpeg(_image(450, 800))
    ref = preprocess_image(cv2.imdecode(data, cv2.IMREAD_COLOR))

    def refuse(*args, **kwargs):
        raise RuntimeError("the device decoder refuses")

    with monkeypatch.context() as m:  # a decoder that refuses everything: OpenCV takes over, bit-identical
        m.setattr(preprocess, "_decode_jpeg", refuse)
        torch.testing.assert_close(preprocess_jpegs([data])[0], ref, rtol=0, atol=0)
    truncated = data[:600]  # the header survives, the scan does not
    assert jpeg_size(truncated) == (450, 800)
    with pytest.raises(JpegDecodeError, match="cannot decode 600 bytes of JPEG") as err:
        preprocess_jpegs([data, truncated])
    assert err.value.index == 1


def test_header_parser_reads_sizes_and_rejects_corrupt_data():
    image = _image(90, 160)
    assert jpeg_size(_jpeg(image)) == (90, 160)
    assert jpeg_size(_jpeg(image, IMWRITE_JPEG_PROGRESSIVE=1).tobytes()) == (90, 160)
    assert jpeg_size(_jpeg(image[..., 0])) == (90, 160)
    assert jpeg_size(_jpeg(np.zeros((900, 1600, 3), np.uint8))) == (900, 1600)
    data = _jpeg(image)
    sof = next(i for i in range(2, data.size - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    png = cv2.imencode(".png", image)[1].ravel()
    zero = data.copy()
    zero[sof + 5: sof + 7] = 0  # height 0 (defined later by a DNL marker): not supported
    bad_length = data.copy()
    bad_length[4:6] = (0xFF, 0xFF)  # the APP0 segment claims 64 KiB
    cases = {"": b"", "no SOI": png, "not a jpeg": b"\xff\xd8 this is not a jpeg", "cut in APP0": data[:10],
             "cut before SOF": data[:sof], "cut in SOF": data[:sof + 6], "zero height": zero,
             "bad length": bad_length, "EOI first": b"\xff\xd8\xff\xd9", "SOS first": b"\xff\xd8\xff\xda\x00\x02"}
    for what, case in cases.items():
        with pytest.raises(JpegDecodeError):
            jpeg_size(case)
            pytest.fail(what)
    with pytest.raises(ValueError, match="1-D uint8"):
        jpeg_size(np.zeros((4, 4), np.uint8))


def test_decode_on_device_modes():
    assert not decode_on_device("auto", "cpu") and decode_on_device("auto", "cuda:1")
    assert decode_on_device("on", "cpu") and not decode_on_device("off", "cuda")
    with pytest.raises(ValueError, match="gpu_decode"):
        decode_on_device("yes", "cpu")
    with pytest.raises(ValueError, match="gpu_decode"):
        PipelineConfig(gpu_decode="gpu")


# ------------------------------------------------------------------------------------------------ pipeline


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sparsedrive(2, stage_config(2, backbone_depth=18, image_hw=(128, 320)))


def _pipeline(model, **config):
    """build_inputs only: no BatchNorm folding, so the module-wide model stays as built."""
    return SparseDrivePipeline(model, PipelineConfig(fuse_batchnorm=False, **config))


def _requests(masked=(3,)):
    """The same frame twice: BGR images (today's path) and JPEG bytes only (the device path)."""
    jpegs = [None if i in masked else _jpeg(_image(900, 1600, seed=i)) for i in range(6)]
    k = np.array([[[1000.0 + 10 * i, 0, 800], [0, 1000, 450], [0, 0, 1]] for i in range(6)])
    cam_from_ref = np.stack([np.eye(4)] * 6)
    cam_from_ref[:, :3, 3] = np.arange(18).reshape(6, 3) * 0.1
    images = [None if j is None else cv2.imdecode(j, cv2.IMREAD_COLOR) for j in jpegs]
    decoded = FrameRequest(7, images, k, cam_from_ref, np.eye(4), 2)
    undecoded = FrameRequest(7, [None] * 6, k, cam_from_ref, np.eye(4), 2, jpeg=jpegs)
    return decoded, undecoded


def test_build_inputs_on_the_jpeg_path_equals_the_numpy_path(model):
    decoded, undecoded = _requests()
    ref = _pipeline(model).build_inputs(decoded)
    out = _pipeline(model, gpu_decode="on").build_inputs(undecoded)
    _assert_close(out.images[0, [0, 1, 2, 4, 5]], ref.images[0, [0, 1, 2, 4, 5]])
    assert not out.images[0, 3].any() and not out.projection_mat[0, 3].any()  # masked: black, zero projection
    torch.testing.assert_close(out.projection_mat, ref.projection_mat, rtol=0, atol=0)
    for name in ("image_wh", "timestamp", "T_global", "T_global_inv", "command"):
        assert torch.equal(getattr(out, name), getattr(ref, name)), name
    # gpu_decode off (or auto on a CPU): JPEG-only cameras are decoded with OpenCV, exactly today's numbers.
    for mode in ("off", "auto"):
        torch.testing.assert_close(_pipeline(model, gpu_decode=mode).build_inputs(undecoded).images, ref.images,
                                   rtol=0, atol=0)
    # A camera with only a decoded image keeps the whole frame on today's path.
    mixed = FrameRequest(7, [decoded.images[0]] + [None] * 5, decoded.intrinsics, decoded.cam_from_ref,
                         np.eye(4), 2, jpeg=[None] + list(undecoded.jpeg[1:]))
    torch.testing.assert_close(_pipeline(model, gpu_decode="on").build_inputs(mixed).images, ref.images,
                               rtol=0, atol=0)


@pytest.mark.parametrize("gpu_decode", ["on", "off"])
def test_build_inputs_names_the_camera_of_a_broken_jpeg(model, gpu_decode):
    _, undecoded = _requests(masked=(0,))
    pipeline = _pipeline(model, gpu_decode=gpu_decode)
    for index, broken in ((4, undecoded.jpeg[4][:700]), (2, np.frombuffer(b"\xff\xd8 this is not a jpeg", np.uint8))):
        jpegs = list(undecoded.jpeg)
        jpegs[index] = broken
        with pytest.raises(JpegDecodeError, match="cannot decode|JPEG") as err:
            pipeline.build_inputs(FrameRequest(7, [None] * 6, undecoded.intrinsics, undecoded.cam_from_ref,
                                               np.eye(4), 2, jpeg=jpegs))
        assert err.value.index == index


def test_dump_request_decodes_jpeg_only_cameras(tmp_path):
    node = pytest.importorskip("sparsedrive_ros.ros.sparsedrive_node", reason="rclpy not installed")
    decoded, undecoded = _requests()
    node.dump_request(undecoded, str(tmp_path))
    saved = np.load(tmp_path / "frame_7.npz")
    assert saved["masked"].tolist() == [False, False, False, True, False, False]
    assert np.array_equal(saved["images"][0], decoded.images[0]) and not saved["images"][3].any()


# ------------------------------------------------------------------------------------------------ CUDA


@needs_cuda
def test_cuda_decode_matches_the_cpu_path():
    jpegs = [_jpeg(_image(900, 1600, seed=i)) for i in range(3)] + [_jpeg(_image(450, 800), quality=70)]
    out = preprocess_jpegs(jpegs, device="cuda")
    assert out.device.type == "cuda" and out.shape == (4, 3, 256, 704)
    for k, data in enumerate(jpegs):  # nvjpeg vs libjpeg-turbo: a grey level or so before the resize
        _assert_close(out[k], preprocess_image(cv2.imdecode(data, cv2.IMREAD_COLOR)))
    with pytest.raises(JpegDecodeError) as err:
        preprocess_jpegs([jpegs[0], jpegs[1][:700]], device="cuda")
    assert err.value.index == 1


@needs_cuda
def test_cuda_pipeline_builds_inputs_on_the_device():
    torch.manual_seed(0)
    model = build_sparsedrive(2, stage_config(2, backbone_depth=18, image_hw=(128, 320)))
    decoded, undecoded = _requests()
    ref = SparseDrivePipeline(model, PipelineConfig(device="cpu", fuse_batchnorm=False)).build_inputs(decoded)
    pipeline = SparseDrivePipeline(model, PipelineConfig(device="cuda"))  # auto: on for CUDA
    out = pipeline.build_inputs(undecoded)
    assert out.images.device.type == "cuda"
    _assert_close(out.images[0], ref.images[0])
    result = pipeline.process(undecoded)
    assert result.boxes.shape == (300, 10)
