"""bot/adapters/imaging: hostile inbound files, fit-to-limit, contact sheets, grid splits.

Every image is generated here; nothing is read from disk.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFont

from bot.adapters import imaging
from bot.adapters.imaging import (
    FittedImage,
    ImageError,
    InboundImage,
    check_declared_size,
    contact_sheet,
    extension_for,
    fit_to_limit,
    image_size,
    normalise_inbound,
    sniff_format,
    split_grid,
)

MIB = 1024 * 1024
RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **options)
    return out.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = random.Random(seed)
    per_pixel = len(Image.new(mode, (1, 1)).tobytes())  # I;16 is one band of two bytes
    return Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * per_pixel))


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def close_to(actual: tuple[int, ...] | float | None, expected: tuple[int, ...], tol: int = 12) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header declaring any size, with a token of pixel data (a bomb's shape)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def heif_bytes(im: Image.Image) -> bytes | None:
    try:
        import pillow_heif

        out = io.BytesIO()
        pillow_heif.from_pillow(im).save(out, quality=95)
    except Exception:
        return None
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# sniffing, names, declared sizes
# ---------------------------------------------------------------------------------------------


def test_sniff_format_reads_magic_bytes_not_names() -> None:
    small = Image.new("RGB", (4, 4), RED)
    assert sniff_format(encode(small, "PNG")) == "PNG"
    assert sniff_format(encode(small, "JPEG")) == "JPEG"
    assert sniff_format(encode(small, "WEBP")) == "WEBP"
    assert sniff_format(encode(small, "GIF")) == "GIF"
    assert sniff_format(b"") is None
    assert sniff_format(b"%PDF-1.7\n") is None
    assert sniff_format(b"hello, world") is None
    assert sniff_format(encode(small, "BMP")) is None
    # ISO-BMFF: HEIC and generic HEIF brands are HEIF; AVIF and MP4 are not.
    assert sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic") == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1") is None
    assert sniff_format(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif") is None
    assert sniff_format(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2") is None


def test_extension_for() -> None:
    assert extension_for("image/png") == "png"
    assert extension_for("image/jpeg") == "jpg"
    assert extension_for("IMAGE/JPEG; charset=binary") == "jpg"
    assert extension_for("image/webp") == "webp"
    assert extension_for("image/heic") == "heic"
    assert extension_for("application/octet-stream") == "bin"


def test_check_declared_size() -> None:
    check_declared_size(19_999_999, max_bytes=20_000_000, filename="photo.png")
    with pytest.raises(ImageError) as err:
        check_declared_size(25_300_000, max_bytes=20_000_000, filename="photo.png")
    assert str(err.value).startswith("photo.png is 25.3 MB; the limit is 20 MB — ")
    with pytest.raises(ImageError, match="empty"):
        check_declared_size(0, max_bytes=20_000_000, filename="photo.png")
    with pytest.raises(ImageError, match=r"^That file is 21 MB"):
        check_declared_size(21_000_000, max_bytes=20_000_000)


# ---------------------------------------------------------------------------------------------
# inbound: refusing what we cannot use
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "what"),
    [
        (b"", "photo.png", "an empty file"),
        (b"just some notes\nnot a picture\n", "notes.png", "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "scan.jpg", "a PDF document"),
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "x.png", "a web page (HTML)"),
        (b'{"prompt": "a cat"}', "spec.png", "JSON text"),
        (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1", "a.avif", "an AVIF image"),
        (bytes(range(256)) * 4, "blob.webp", "unrecognised binary data"),
    ],
)
def test_not_an_image_says_what_it_looks_like(data: bytes, filename: str, what: str) -> None:
    with pytest.raises(ImageError) as err:
        normalise_inbound(data, filename=filename)
    message = str(err.value)
    assert message.startswith(f"{filename} is not an image I can use (got {what})")
    assert "\n" not in message


def test_bmp_is_named_but_refused() -> None:
    data = encode(Image.new("RGB", (8, 8), RED), "BMP")
    with pytest.raises(ImageError, match=r"got a BMP image"):
        normalise_inbound(data, filename="old.bmp")


def test_decompression_bomb_refused_before_decoding() -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    # Over Pillow's own hard limit (it refuses in open()).
    with pytest.raises(ImageError, match="megapixels"):
        normalise_inbound(png_header_only(100_000, 100_000), filename="bomb.png")
    # 81 MP: under Pillow's limits, over ours. The tiny pixel payload would make a decode fail
    # as "damaged", so the pixel-count message proves the check came before decoding.
    with pytest.raises(ImageError) as err:
        normalise_inbound(png_header_only(9000, 9000), filename="bomb.png")
    assert str(err.value) == (
        "bomb.png is 9000×9000 pixels (81 MP); the limit is 64 megapixels."
    )
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # no global knob was turned


def test_pixel_limit_is_per_call() -> None:
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    with pytest.raises(ImageError, match="100×100 pixels"):
        normalise_inbound(data, max_pixels=5_000)
    assert normalise_inbound(data).width == 100  # the default limit lets it through


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file_is_an_error(fmt: str) -> None:
    data = encode(noise((256, 256)), fmt)
    with pytest.raises(ImageError, match="damaged or incomplete"):
        normalise_inbound(data[: len(data) // 2], filename=f"cut.{fmt.lower()}")
    with pytest.raises(ImageError, match="damaged or incomplete"):
        normalise_inbound(data[:-100], filename="cut")


def test_truncated_jpeg_missing_only_its_end_marker() -> None:
    data = encode(noise((64, 64)), "JPEG")
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(ImageError, match="damaged or incomplete"):
        normalise_inbound(data[:-2])


def test_corrupt_header_is_an_error() -> None:
    data = bytearray(encode(noise((32, 32)), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: the CRC no longer matches
    with pytest.raises(ImageError, match="damaged"):
        normalise_inbound(bytes(data))


# ---------------------------------------------------------------------------------------------
# inbound: modes, orientation, metadata, size
# ---------------------------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    out = normalise_inbound(encode(cmyk, "JPEG", quality=95), filename="print.jpg")
    assert out.mime_type == "image/jpeg"
    assert out.original_format == "JPEG"
    im = decode(out.data)
    assert im.mode == "RGB"
    assert close_to(im.getpixel((16, 16)), RED, tol=20)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    im16 = Image.new("I;16", (64, 8))
    for x in range(64):
        for y in range(8):
            im16.putpixel((x, y), 32768 if x < 32 else 4096)
    data = encode(im16, "PNG")
    assert decode(data).mode.startswith("I")  # the test really feeds 16-bit grey
    out = normalise_inbound(data, filename="scan16.png")
    im = decode(out.data)
    assert im.mode == "L"
    mid = im.getpixel((8, 4))
    dark = im.getpixel((56, 4))
    assert isinstance(mid, int) and isinstance(dark, int)
    assert abs(mid - 128) <= 3  # a naive conversion would clip this to 255
    assert abs(dark - 16) <= 3


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    assert getattr(decode(data), "n_frames", 1) == 3
    out = normalise_inbound(data, filename="anim.gif")
    assert out.original_format == "GIF"
    assert (out.width, out.height) == (40, 30)
    im = decode(out.data)
    assert getattr(im, "n_frames", 1) == 1
    assert close_to(im.convert("RGB").getpixel((20, 15)), RED, tol=20)


def test_gif_with_transparency_keeps_it() -> None:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    for x in range(10):
        for y in range(20):
            im.putpixel((x, y), 1)
    data = encode(im, "GIF", transparency=1)
    out = normalise_inbound(data)
    assert out.mime_type == "image/png"
    result = decode(out.data).convert("RGBA")
    left, right = result.getpixel((2, 10)), result.getpixel((15, 10))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[3] == 0
    assert right == (255, 0, 0, 255)


def test_exif_orientation_is_applied() -> None:
    # Stored 40x20: red left half, blue right half. Orientation 6 = rotate 90° clockwise to
    # display, so the viewer sees a 20x40 picture with red on top.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"  # camera make: metadata that must not leak
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert image_size(data) == (20, 40)
    out = normalise_inbound(data, filename="phone.jpg")
    assert (out.width, out.height) == (20, 40)
    im = decode(out.data)
    assert im.size == (20, 40)
    assert close_to(im.getpixel((10, 5)), RED, tol=25)
    assert close_to(im.getpixel((10, 35)), BLUE, tol=25)
    assert len(im.getexif()) == 0
    assert b"PhoneMaker" not in out.data


def test_metadata_is_stripped() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N"}  # a GPS block
    data = encode(noise((64, 48)), "JPEG", exif=exif.tobytes(), comment=b"private note")
    out = normalise_inbound(data)
    im = decode(out.data)
    assert len(im.getexif()) == 0
    assert "comment" not in im.info
    assert "icc_profile" not in im.info
    assert b"SecretCam" not in out.data and b"private note" not in out.data


def test_transparent_png_stays_png_with_alpha() -> None:
    im = noise((64, 64))
    im.putalpha(Image.linear_gradient("L").resize((64, 64)))
    out = normalise_inbound(encode(im, "PNG"), filename="cutout.png")
    assert out.mime_type == "image/png"
    result = decode(out.data)
    assert result.mode == "RGBA"
    assert result.getpixel((10, 0)) == im.getpixel((10, 0))
    assert result.getpixel((10, 63)) == im.getpixel((10, 63))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_opaque_alpha_is_not_transparency(mode: str) -> None:
    im = Image.new(mode, (32, 32))
    if mode == "P":
        im.putpalette([10, 200, 30] * 256)
    else:
        im = Image.new(mode, (32, 32), (120, 255) if mode == "LA" else (10, 200, 30, 255))
    out = normalise_inbound(encode(im, "PNG"))
    assert out.mime_type == "image/jpeg"


def test_palette_png_with_transparency_becomes_rgba() -> None:
    im = Image.new("P", (16, 16), 0)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (8, 0, 16, 16))
    out = normalise_inbound(encode(im, "PNG", transparency=0))
    assert out.mime_type == "image/png"
    result = decode(out.data)
    assert result.mode == "RGBA"
    assert result.getpixel((2, 2)) == (0, 0, 0, 0)
    assert result.getpixel((12, 2)) == (0, 255, 0, 255)


def test_grey_with_alpha_keeps_alpha() -> None:
    im = Image.new("LA", (16, 16), (200, 255))
    im.paste((50, 0), (0, 0, 8, 16))
    out = normalise_inbound(encode(im, "PNG"))
    assert out.mime_type == "image/png"
    result = decode(out.data)
    assert "A" in result.getbands()
    pixel = result.getpixel((2, 2))
    assert isinstance(pixel, tuple) and pixel[-1] == 0


def test_large_image_is_downscaled_keeping_aspect() -> None:
    data = encode(noise((3000, 1500), seed=3), "JPEG", quality=80)
    out = normalise_inbound(data)
    assert (out.width, out.height) == (2048, 1024)
    assert decode(out.data).size == (2048, 1024)
    smaller = normalise_inbound(data, max_side=500)
    assert (smaller.width, smaller.height) == (500, 250)


def test_small_image_is_not_upscaled() -> None:
    out = normalise_inbound(encode(Image.new("RGB", (7, 3), RED), "PNG"))
    assert (out.width, out.height) == (7, 3)


def test_webp_input() -> None:
    out = normalise_inbound(encode(Image.new("RGB", (30, 20), GREEN), "WEBP", quality=95))
    assert out.original_format == "WEBP"
    assert out.mime_type == "image/jpeg"
    assert close_to(decode(out.data).getpixel((15, 10)), GREEN, tol=20)


def test_heif_input() -> None:
    source = Image.new("RGB", (64, 48), (200, 30, 30))
    data = heif_bytes(source)
    if data is None:
        pytest.skip("pillow-heif cannot encode HEIF on this machine")
    assert sniff_format(data) == "HEIF"
    out = normalise_inbound(data, filename="IMG_0001.HEIC")
    assert out.original_format == "HEIF"
    assert out.mime_type == "image/jpeg"
    assert (out.width, out.height) == (64, 48)
    assert close_to(decode(out.data).getpixel((32, 24)), (200, 30, 30), tol=20)


def test_inbound_output_stays_under_the_inline_limit() -> None:
    # 2048² of noise with real transparency: as PNG it would be ~16 MB.
    im = noise((2048, 2048), seed=7)
    im.putalpha(Image.linear_gradient("L").resize((2048, 2048)))
    out = normalise_inbound(encode(im, "PNG", compress_level=0))
    assert len(out.data) <= imaging.INLINE_IMAGE_BYTES
    assert (out.width, out.height) == (2048, 2048)
    assert out.mime_type == "image/webp"
    assert decode(out.data).mode == "RGBA"


_MODES_BY_FORMAT = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
    "GIF": ["L", "P"],
}
_FORMAT_MODES = [(fmt, mode) for fmt, modes in _MODES_BY_FORMAT.items() for mode in modes]


def _random_image(mode: str, size: tuple[int, int], seed: int, alpha: str) -> Image.Image:
    if mode == "I;16":
        return noise(size, "I;16", seed)
    im = noise(size, "RGB", seed).convert(mode)
    if "A" in mode:
        if alpha == "opaque":
            im.putalpha(255)
        elif alpha == "random":
            im.putalpha(noise(size, "L", seed + 1))
    return im


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt_mode=st.sampled_from(_FORMAT_MODES),
    width=st.integers(1, 90),
    height=st.integers(1, 90),
    max_side=st.integers(8, 120),
    seed=st.integers(0, 1000),
    alpha=st.sampled_from(["opaque", "random"]),
)
def test_normalise_any_mode_property(
    fmt_mode: tuple[str, str], width: int, height: int, max_side: int, seed: int, alpha: str
) -> None:
    fmt, mode = fmt_mode
    source = _random_image(mode, (width, height), seed, alpha)
    out = normalise_inbound(encode(source, fmt), max_side=max_side)
    assert isinstance(out, InboundImage)
    assert out.original_format == fmt
    scale = min(1.0, max_side / max(width, height))
    assert max(out.width, out.height) <= max_side
    assert abs(out.width - width * scale) <= 1 and abs(out.height - height * scale) <= 1
    im = decode(out.data)
    assert im.size == (out.width, out.height)
    assert imaging.sniff_format(out.data) == {"image/jpeg": "JPEG", "image/png": "PNG"}[
        out.mime_type
    ]
    assert im.mode in ("L", "LA", "RGB", "RGBA")
    # PNG exactly when some pixel is see-through.
    assert (out.mime_type == "image/png") == ("A" in im.getbands())
    assert len(im.getexif()) == 0


# ---------------------------------------------------------------------------------------------
# outbound: fit to the upload limit
# ---------------------------------------------------------------------------------------------


def test_fitting_image_is_left_unchanged() -> None:
    data = encode(noise((100, 80)), "PNG")
    fitted = fit_to_limit(data, "image/png", limit_bytes=10 * MIB)
    assert fitted == FittedImage(data, "image/png", "png", 100, 80, None)
    jpeg = encode(noise((50, 40)), "JPEG")
    # The bytes decide the type, not the (wrong) declared one.
    fitted = fit_to_limit(jpeg, "image/png", limit_bytes=10 * MIB)
    assert (fitted.data, fitted.mime_type, fitted.extension) == (jpeg, "image/jpeg", "jpg")


@pytest.fixture(scope="module")
def noisy_4k_png() -> bytes:
    data = encode(noise((4096, 4096), seed=42), "PNG", compress_level=0)
    assert len(data) > 10 * MIB
    return data


def test_noisy_4k_png_fits_10_mib_keeping_its_size(noisy_4k_png: bytes) -> None:
    fitted = fit_to_limit(noisy_4k_png, "image/png", limit_bytes=10 * MIB)
    assert len(fitted.data) <= 10 * MIB
    assert (fitted.width, fitted.height) == (4096, 4096)
    assert fitted.mime_type == "image/jpeg" and fitted.extension == "jpg"
    im = decode(fitted.data)
    assert im.size == (4096, 4096) and im.format == "JPEG"
    assert fitted.note is not None
    assert fitted.note.startswith("re-encoded as JPEG q") and fitted.note.endswith("to fit 10 MiB")


def test_last_resort_downscale_keeps_aspect(noisy_4k_png: bytes) -> None:
    wide = encode(noise((1600, 900), seed=5), "PNG", compress_level=0)
    fitted = fit_to_limit(wide, "image/png", limit_bytes=150_000)
    assert len(fitted.data) <= 150_000
    assert fitted.width < 1600
    assert abs(fitted.width / fitted.height - 1600 / 900) < 0.01
    assert fitted.note is not None
    assert fitted.note.startswith(f"downscaled to {fitted.width}×{fitted.height} and re-encoded")
    assert decode(fitted.data).size == (fitted.width, fitted.height)


def test_transparent_image_over_limit_keeps_alpha() -> None:
    im = noise((600, 400), seed=9)
    im.putalpha(Image.linear_gradient("L").resize((600, 400)))
    data = encode(im, "PNG")
    limit = len(data) // 3
    fitted = fit_to_limit(data, "image/png", limit_bytes=limit)
    assert len(fitted.data) <= limit
    assert fitted.mime_type == "image/webp" and fitted.extension == "webp"
    assert (fitted.width, fitted.height) == (600, 400)
    result = decode(fitted.data)
    assert result.mode == "RGBA"
    top, bottom = result.getpixel((300, 0)), result.getpixel((300, 399))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[3] < 30 and bottom[3] > 225


def test_nearly_fitting_png_is_recompressed_losslessly() -> None:
    # A smooth picture stored without compression: an optimised PNG is far smaller.
    im = Image.linear_gradient("L").resize((512, 512)).convert("RGB")
    data = encode(im, "PNG", compress_level=0)
    fitted = fit_to_limit(data, "image/png", limit_bytes=len(data) - 1000)
    assert fitted.mime_type == "image/png"
    assert fitted.note == f"re-compressed as optimised PNG to fit {imaging._fmt_limit(len(data) - 1000)}"
    assert decode(fitted.data).tobytes() == im.tobytes()


def test_gif_from_the_model_is_converted() -> None:
    data = encode(Image.new("RGB", (20, 20), RED), "GIF")
    fitted = fit_to_limit(data, "image/gif", limit_bytes=10 * MIB)
    assert fitted.mime_type == "image/png"
    assert fitted.note == "converted from GIF to PNG"


def test_fit_refuses_non_images() -> None:
    with pytest.raises(ImageError, match="not in a format I can post"):
        fit_to_limit(b"<html>oops</html>", "image/png", limit_bytes=MIB)


def test_fit_note_units() -> None:
    assert imaging._fmt_limit(10 * MIB) == "10 MiB"
    assert imaging._fmt_limit(8_000_000) == "8 MB"
    assert imaging._fmt_limit(25 * MIB // 2) == "12.5 MiB"
    assert imaging._fmt_limit(150_000) == "146 KiB"


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(16, 160),
    height=st.integers(16, 160),
    fraction=st.floats(0.05, 1.5),
    transparent=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_fit_property(
    width: int, height: int, fraction: float, transparent: bool, seed: int
) -> None:
    im = noise((width, height), seed=seed)
    if transparent:
        im.putalpha(noise((width, height), "L", seed + 1))
    data = encode(im, "PNG")
    limit = max(3000, int(len(data) * fraction))
    fitted = fit_to_limit(data, "image/png", limit_bytes=limit)
    assert len(fitted.data) <= limit
    assert decode(fitted.data).size == (fitted.width, fitted.height)
    if fitted.note is None:
        assert fitted.data == data
    elif "downscaled" not in fitted.note:
        assert (fitted.width, fitted.height) == (width, height)
    else:
        assert abs(fitted.width / fitted.height - width / height) < 0.1 * width / height + 0.05
    if transparent and fitted.note is not None:
        assert fitted.mime_type in ("image/png", "image/webp")


# ---------------------------------------------------------------------------------------------
# contact sheets
# ---------------------------------------------------------------------------------------------


def test_label_fonts_are_scalable() -> None:
    # system fonts where found, then Pillow's own scalable font (>= 10.1): never a bitmap font
    small, big = imaging._font(12), imaging._font(28)
    assert all(isinstance(f, ImageFont.FreeTypeFont) for f in big.fonts)
    assert big.getlength("label") > small.getlength("label")


def test_labels_are_truncated_to_fit() -> None:
    font = imaging._font(16)
    long = "a very long label that will never fit under a small tile " * 3
    cut = imaging._fit_label(long, font, 120)
    assert cut.endswith("…")
    assert font.getlength(cut) <= 120
    assert imaging._fit_label("red", font, 120) == "red"
    assert imaging._fit_label("two\nlines\tand\x00control", font, 500) == "two lines and control"


def test_contact_sheet_of_25_is_bounded() -> None:
    rng = random.Random(1)
    items = []
    for i in range(25):
        size = rng.choice([(300, 300), (400, 225), (225, 400), (640, 480)])
        fmt = rng.choice(["PNG", "JPEG"])
        items.append((encode(noise(size, seed=i), fmt), f"variant {i}: " + "long words " * 8))
    sheet = contact_sheet(items, max_width=2048, limit_bytes=2 * MIB)
    assert len(sheet) <= 2 * MIB
    im = decode(sheet)
    assert im.format in ("JPEG", "PNG")
    assert im.width <= 2048
    assert im.height <= 4 * 2048


def test_contact_sheet_respects_a_tight_byte_limit() -> None:
    items = [(encode(noise((512, 512), seed=i), "PNG"), f"v{i}") for i in range(9)]
    sheet = contact_sheet(items, max_width=1536, limit_bytes=120_000)
    assert len(sheet) <= 120_000
    assert decode(sheet).width <= 1536


def test_contact_sheet_columns_and_labels() -> None:
    tile = encode(Image.new("RGB", (100, 100), (20, 20, 20)), "PNG")
    one_row = decode(contact_sheet([(tile, "a"), (tile, "b"), (tile, "c")], columns=3))
    one_col = decode(contact_sheet([(tile, "a"), (tile, "b"), (tile, "c")], columns=1))
    assert one_row.width > one_row.height
    assert one_col.height > one_col.width

    def bright_pixels(im: Image.Image) -> int:
        grey = im.convert("L").point(lambda v: 255 if v > 200 else 0)
        return sum(1 for x in range(grey.width) for y in range(grey.height) if grey.getpixel((x, y)))

    labelled = decode(contact_sheet([(tile, "LABEL")], max_width=400))
    unlabelled = decode(contact_sheet([(tile, "")], max_width=400))
    assert bright_pixels(labelled) > 20  # the light label text is drawn
    assert bright_pixels(unlabelled) == 0


def test_contact_sheet_survives_unreadable_items() -> None:
    good = encode(Image.new("RGB", (64, 64), RED), "PNG")
    sheet = contact_sheet([(good, "ok"), (b"", "failed"), (b"not an image", "junk")])
    assert decode(sheet).width > 0


def test_contact_sheet_needs_items() -> None:
    with pytest.raises(ValueError):
        contact_sheet([])


@settings(max_examples=15, deadline=None)
@given(
    count=st.integers(1, 30),
    max_width=st.integers(200, 2048),
    columns=st.one_of(st.none(), st.integers(1, 12)),
)
def test_contact_sheet_bounds_property(count: int, max_width: int, columns: int | None) -> None:
    tile = encode(noise((48, 32), seed=count), "PNG")
    items = [(tile, f"value {i}") for i in range(count)]
    sheet = contact_sheet(items, max_width=max_width, limit_bytes=400_000, columns=columns)
    assert len(sheet) <= 400_000
    im = decode(sheet)
    assert im.width <= max_width
    assert im.height <= 4 * max_width


# ---------------------------------------------------------------------------------------------
# grid split
# ---------------------------------------------------------------------------------------------


def _colour_grid(rows: int, cols: int, tile: int) -> tuple[Image.Image, list[tuple[int, int, int]]]:
    colours = [((37 * i) % 256, (91 * i) % 256, (151 * i + 60) % 256) for i in range(rows * cols)]
    sheet = Image.new("RGB", (cols * tile, rows * tile))
    for index, colour in enumerate(colours):
        r, c = divmod(index, cols)
        sheet.paste(colour, (c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
    return sheet, colours


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_split_3x3_sprite_sheet(fmt: str) -> None:
    sheet, colours = _colour_grid(3, 3, 64)
    tiles = split_grid(encode(sheet, fmt, quality=95), 3, 3)
    assert len(tiles) == 9
    for data, colour in zip(tiles, colours, strict=True):
        assert sniff_format(data) == fmt
        im = decode(data)
        assert im.size == (64, 64)
        assert close_to(im.convert("RGB").getpixel((32, 32)), colour, tol=12)


def test_split_uneven_sizes_cover_the_image() -> None:
    data = encode(noise((100, 50)), "PNG")
    tiles = [decode(t) for t in split_grid(data, 2, 3)]
    widths = [t.width for t in tiles[:3]]
    heights = [tiles[0].height, tiles[3].height]
    assert sum(widths) == 100 and max(widths) - min(widths) <= 1
    assert sum(heights) == 50


def test_split_keeps_transparency() -> None:
    im = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    im.paste((0, 0, 255, 255), (20, 0, 40, 20))
    left, right = split_grid(encode(im, "PNG"), 1, 2)
    assert decode(left).getpixel((5, 5)) == (255, 0, 0, 0)
    assert decode(right).getpixel((5, 5)) == (0, 0, 255, 255)


def test_split_rejects_bad_grids() -> None:
    data = encode(Image.new("RGB", (4, 4), RED), "PNG")
    with pytest.raises(ImageError):
        split_grid(data, 0, 3)
    with pytest.raises(ImageError, match="too small"):
        split_grid(data, 5, 5)
    with pytest.raises(ImageError, match="not an image"):
        split_grid(b"hello", 2, 2)


def test_image_size_reads_header_only() -> None:
    assert image_size(encode(noise((33, 21)), "PNG")) == (33, 21)
    # A header declaring 9000x9000 with almost no pixel data: reading the size never decodes.
    assert image_size(png_header_only(9000, 9000)) == (9000, 9000)
    with pytest.raises(ImageError):
        image_size(b"\x01\x02" * 32)


def _swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and green primaries are sRGB's green and red.

    Built by patching lcms's own sRGB profile: swap the rXYZ/gXYZ tag offsets and rename it
    so it no longer claims to be sRGB. Pixels tagged with it that say (255, 0, 0) are green.
    """
    from PIL import ImageCms

    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", icc[128:132])[0]
    entries = {bytes(icc[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red_at, green_at = entries[b"rXYZ"], entries[b"gXYZ"]
    red_ref, green_ref = icc[red_at + 4 : red_at + 12], icc[green_at + 4 : green_at + 12]
    icc[red_at + 4 : red_at + 12], icc[green_at + 4 : green_at + 12] = green_ref, red_ref
    return bytes(icc).replace("sRGB".encode("utf-16-be"), "swap".encode("utf-16-be"))


def test_non_srgb_profile_is_converted_to_srgb() -> None:
    icc = _swapped_primaries_profile()
    data = encode(Image.new("RGB", (16, 16), RED), "PNG", icc_profile=icc)
    out = normalise_inbound(data)
    im = decode(out.data)
    assert "icc_profile" not in im.info
    assert close_to(im.getpixel((8, 8)), GREEN, tol=25)
    # A CMYK JPEG with an unusable profile still converts (naively) instead of failing.
    cmyk = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", icc_profile=b"junk")
    assert close_to(decode(normalise_inbound(cmyk).data).getpixel((4, 4)), RED, tol=20)


def test_refit_keeps_the_colour_profile() -> None:
    icc = _swapped_primaries_profile()
    data = encode(noise((300, 200), seed=11), "PNG", icc_profile=icc)
    fitted = fit_to_limit(data, "image/png", limit_bytes=len(data) // 2)
    assert fitted.mime_type == "image/jpeg"
    assert decode(fitted.data).info.get("icc_profile") == icc


def test_multi_picture_jpeg_uses_the_main_picture() -> None:
    # Phone JPEGs are often MPO (a main picture plus depth/preview pictures).
    main, extra = Image.new("RGB", (40, 30), RED), Image.new("RGB", (40, 30), BLUE)
    data = encode(main, "MPO", save_all=True, append_images=[extra])
    out = normalise_inbound(data, filename="IMG_1234.JPG")
    assert out.original_format == "JPEG"
    assert close_to(decode(out.data).getpixel((5, 5)), RED, tol=20)


_CORRUPTIBLE = {
    fmt: encode(noise((40, 32), seed=3), fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF")
}


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(sorted(_CORRUPTIBLE)),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    keep=st.floats(0.05, 1.0),
)
def test_corrupted_files_fail_only_with_image_error(
    fmt: str, flips: list[tuple[float, int]], keep: float
) -> None:
    data = bytearray(_CORRUPTIBLE[fmt])
    for where, value in flips:
        data[int(where * len(data))] = value
    damaged = bytes(data[: max(1, int(len(data) * keep))])
    for call in (
        lambda: normalise_inbound(damaged),
        lambda: fit_to_limit(damaged, "image/png", limit_bytes=2_000),
        lambda: split_grid(damaged, 2, 2),
    ):
        try:
            call()
        except ImageError as exc:
            assert str(exc) and "\n" not in str(exc)
