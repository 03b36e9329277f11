"""Contact-sheet labels in any script: system fonts with wide coverage where found (DejaVu Sans,
Noto Sans CJK, …), Pillow's scalable font always last; a character no font has is drawn as a
box and never raises. Latin, CJK and emoji labels through the real contact_sheet()."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont

from bot.adapters.imaging import contact_sheet, sheets

LATIN, CJK, EMOJI = "red kite", "凧あげ 风筝", "🪁😀✨"
DEJAVU = next((p for p in sheets.label_font_paths() if p.endswith("DejaVuSans.ttf")), None)
needs_dejavu = pytest.mark.skipif(DEJAVU is None, reason="DejaVu Sans is not installed")


def png(colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (160, 120), colour).save(buf, "PNG")
    return buf.getvalue()


def rendered(font: sheets.LabelFont, text: str) -> Image.Image:
    image = Image.new("L", (400, 60), 0)
    font.draw(ImageDraw.Draw(image), (4, 4), text, 255)
    return image


@pytest.fixture
def no_system_fonts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a slim container: no font files, no fontconfig; Pillow's own font only."""
    monkeypatch.setattr(sheets, "label_font_paths", lambda: ())
    sheets._font.cache_clear()
    yield
    sheets._font.cache_clear()


def test_pillows_font_alone_draws_every_script_without_raising(no_system_fonts: None) -> None:
    font = sheets._font(20)
    assert len(font.fonts) == 1 and isinstance(font.fonts[0], ImageFont.FreeTypeFont)
    for text in (LATIN, CJK, EMOJI, "Жук Ελληνικά", "a\u0301 e\u20dd", "\U0010fffd"):
        assert font.getlength(text) > 0
        assert rendered(font, text).getbbox() is not None  # glyphs or boxes, drawn
    sheet = contact_sheet([(png(), LATIN), (png(), CJK), (png(), EMOJI)], max_width=600)
    assert Image.open(io.BytesIO(sheet)).width <= 600


@needs_dejavu
def test_each_character_comes_from_the_first_font_that_has_it() -> None:
    assert DEJAVU is not None
    pillow = ImageFont.load_default(size=20)  # Latin only
    dejavu = ImageFont.truetype(DEJAVU, 20)  # Latin, Greek, Cyrillic, many symbols
    font = sheets.LabelFont([pillow, dejavu])
    assert font.has_glyph(0, "k") and not font.has_glyph(0, "Ж") and font.has_glyph(1, "Ж")
    assert font.runs("kite Жук kite") == [(pillow, "kite "), (dejavu, "Жук "), (pillow, "kite")]
    # a character nobody has goes to the first font (its box); combining marks stay put
    assert font.runs("a\U0010fffd") == [(pillow, "a\U0010fffd")]
    assert font.runs("Ж\u0301k") == [(dejavu, "Ж\u0301"), (pillow, "k")]
    assert font.getlength("kite Жук") == pytest.approx(
        pillow.getlength("kite ") + dejavu.getlength("Жук")
    )
    # the fallback really draws the glyph, not the first font's box
    boxed = rendered(sheets.LabelFont([pillow]), "Ж")
    drawn = rendered(font, "Ж")
    assert ImageChops.difference(boxed, drawn).getbbox() is not None


def test_cjk_labels_use_a_cjk_font_when_the_system_has_one() -> None:
    font = sheets._font(20)
    cjk = [i for i in range(len(font.fonts)) if font.has_glyph(i, "凧")]
    if not cjk:
        pytest.skip("no CJK font on this system (e.g. apt-get install fonts-noto-cjk)")
    [(used, piece)] = font.runs("凧あげ")
    assert used is font.fonts[cjk[0]] and piece == "凧あげ"
    boxes = rendered(sheets.LabelFont([ImageFont.load_default(size=20)]), "凧あげ")
    assert ImageChops.difference(boxes, rendered(font, "凧あげ")).getbbox() is not None


def test_latin_cjk_and_emoji_labels_on_a_real_sheet() -> None:
    items = [(png(), LATIN), (png((40, 200, 40)), CJK), (png((40, 40, 200)), EMOJI)]
    items += [(b"", f"{CJK} {EMOJI} mixed, and long enough to be cut with an ellipsis")]
    sheet = Image.open(io.BytesIO(contact_sheet(items, max_width=800)))
    assert sheet.width <= 800
    # every label row has light text pixels under its tile
    grey = sheet.convert("L").point(lambda v: 255 if v > 200 else 0)
    assert grey.getbbox() is not None
    # a label cut to fit never splits into garbage: the cut keeps whole characters
    font = sheets._font(16)
    cut = sheets._fit_label(f"{CJK} {EMOJI} " * 5, font, 150)
    assert cut.endswith("…") and font.getlength(cut) <= 150


def test_odd_text_never_raises() -> None:
    for label in ("a\ud800b", "\x00\x1b[31m", "\u202eevil", "👨\u200d👩\u200d👧", "\ufffe", ""):
        sheet = contact_sheet([(png(), label)], max_width=300)
        assert Image.open(io.BytesIO(sheet)).width > 0


def test_font_files_are_found_by_name_best_first(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "NotoSansCJK-Regular.ttc").write_bytes(b"")
    (tmp_path / "a" / "wqy-zenhei.ttc").write_bytes(b"")
    (tmp_path / "other.ttf").write_bytes(b"")
    found = sheets._fonts_on_disk(sheets._CJK_FONTS, [str(tmp_path), str(tmp_path / "none")])
    assert found == [
        str(tmp_path / "a" / "b" / "NotoSansCJK-Regular.ttc"),
        str(tmp_path / "a" / "wqy-zenhei.ttc"),
    ]


def test_unreadable_font_files_are_skipped(tmp_path: Path) -> None:
    broken = tmp_path / "no-such-family-broken.ttf"  # (Pillow retries a known name elsewhere)
    broken.write_bytes(b"not a font")
    font = sheets.label_font(18, [str(broken)])
    assert len(font.fonts) == 1  # Pillow's own, still drawing
    assert font.getlength(LATIN) > 0


def test_without_fontconfig_there_is_no_fc_match(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sheets.shutil, "which", lambda name: None)
    assert sheets._fontconfig_fonts(sheets._FC_PATTERNS) == []
