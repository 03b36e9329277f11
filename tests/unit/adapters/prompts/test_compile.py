"""compile_request and rest_body: the exact parts, labels, rules and config sent."""

from __future__ import annotations

import base64
import json

import pytest
from google.genai import types

from bot.adapters.prompts import (
    Defaults,
    RequestOptions,
    ResolvedImage,
    compile_request,
    prepare,
    rest_body,
)

PRO = Defaults(model="pro", size="1K", aspect="1:1")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20


def image(desc: str, kind: str | None = None, data: bytes = PNG) -> ResolvedImage:
    return ResolvedImage(data=data, mime_type="image/png", description=desc, anchor_kind=kind)


def test_text_part_is_compact_json_without_bot_only_keys() -> None:
    prepared = prepare(
        {
            "task": "generate_image",
            "subject": "a café",
            "metadata": {"author": "me"},
            "output_format": {"aspect_ratio": "16:9", "mime_type": "image/png"},
            "x_custom": {"kept": True},
        },
        None,
        PRO,
    )
    compiled = compile_request(prepared, [])
    assert compiled.text == (
        '{"task":"generate_image","subject":"a café","x_custom":{"kept":true}}'
    )
    assert [p.text for p in compiled.parts] == [compiled.text]
    assert compiled.config.response_modalities == ["TEXT", "IMAGE"]
    assert compiled.config.image_config == types.ImageConfig(aspect_ratio="16:9", image_size="1K")
    assert (compiled.model, compiled.size, compiled.aspect) == ("gemini-3-pro-image", "1K", "16:9")


def test_images_follow_in_order_each_with_a_label_and_rules() -> None:
    prepared = prepare(
        {
            "subject": "alice holding the mug",
            "inputs": [
                {"type": "image", "data": "attachment:1", "role": "reference", "note": "pose"},
                {"type": "image", "data": "anchor:alice", "role": "identity_anchor"},
                {"type": "image", "data": "anchor:mug", "role": "identity_anchor"},
                {"type": "image", "data": "anchor:ink", "role": "identity_anchor"},
                {"type": "image", "data": "anchor:hero", "role": "identity_anchor"},
            ],
        },
        None,
        PRO,
    )
    images = [
        image("reference image (attachment 1)"),
        image("identity anchor 'alice' (face)", "face"),
        image("identity anchor 'mug' (product)", "product"),
        image("identity anchor 'ink' (style)", "style"),
        image("identity anchor 'hero' (character)", "character"),
    ]
    compiled = compile_request(prepared, images)
    sent = json.loads(compiled.text)
    assert sent["inputs"] == [
        {"type": "image", "data": "image 1", "role": "reference", "note": "pose"},
        {"type": "image", "data": "image 2", "role": "identity_anchor"},
        {"type": "image", "data": "image 3", "role": "identity_anchor"},
        {"type": "image", "data": "image 4", "role": "identity_anchor"},
        {"type": "image", "data": "image 5", "role": "identity_anchor"},
    ]
    assert sent["consistency_rules"] == [
        "keep facial features identical to image 2",
        "keep the product's shape, colours, materials and markings identical to image 3",
        "match the style of image 4",
        "keep facial features, hairstyle and outfit identical to image 5",
    ]
    labels = [p.text for p in compiled.parts[1::2]]
    assert labels == [f"Image {n}: {img.description}" for n, img in enumerate(images, 1)]
    blobs = [p.inline_data for p in compiled.parts[2::2]]
    assert all(b is not None and b.data == PNG and b.mime_type == "image/png" for b in blobs)
    assert len(compiled.parts) == 1 + 2 * len(images)
    assert compiled.estimated_input_tokens() == (
        (len(compiled.text) + 3) // 4
        + sum((len(t or "") + 3) // 4 for t in labels)
        + 560 * len(images)
    )


def test_author_rules_are_kept_and_extended() -> None:
    prepared = prepare(
        {
            "subject": "x",
            "consistency_rules": "same hat",
            "inputs": [{"type": "image", "data": "attachment:1", "role": "identity_anchor"}],
        },
        None,
        PRO,
    )
    compiled = compile_request(prepared, [image("identity anchor (attachment 1)")])
    assert json.loads(compiled.text)["consistency_rules"] == [
        "same hat",
        "keep the identity of the subject in image 1 identical (features, shape, colours)",
    ]


def test_image_count_must_match_inputs() -> None:
    prepared = prepare({"subject": "x", "inputs": [{"data": "attachment:1"}]}, None, PRO)
    with pytest.raises(ValueError, match="1 inputs but 0 resolved images"):
        compile_request(prepared, [])


def test_rest_body_shape_and_image_placeholders() -> None:
    prepared = prepare(
        "a cat",
        RequestOptions(anchors=["alice"], aspect="3:2", size="2K"),
        PRO,
    )
    compiled = compile_request(prepared, [image("identity anchor 'alice' (face)", "face")])
    body = rest_body(compiled)
    assert body == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": compiled.text},
                    {"text": "Image 1: identity anchor 'alice' (face)"},
                    {
                        "inlineData": {
                            "mimeType": "image/png",
                            "data": f"<{len(PNG)} bytes image/png>",
                        }
                    },
                ],
            }
        ],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "3:2", "imageSize": "2K"},
        },
    }
    full = rest_body(compiled, with_images=True)
    data = full["contents"][0]["parts"][2]["inlineData"]["data"]
    assert base64.b64decode(data) == PNG
    json.dumps(full)  # JSON-ready


def test_rest_body_carries_history_unchanged() -> None:
    prepared = prepare(
        {"task": "edit_image", "changes": "add a hat", "inputs": [{"data": "chain:latest"}]},
        None,
        PRO,
    )
    compiled = compile_request(prepared, [image("image to edit (chain latest)")])
    previous = types.Content(
        role="model",
        parts=[
            types.Part(text="Here it is", thought_signature=b"sig-1"),
            types.Part(
                inline_data=types.Blob(data=b"img", mime_type="image/png"),
                thought_signature=b"sig-2",
            ),
        ],
    )
    body = rest_body(compiled, history=[previous])
    assert body["contents"][0] == {
        "role": "model",
        "parts": [
            {"text": "Here it is", "thoughtSignature": base64.b64encode(b"sig-1").decode()},
            {
                "inlineData": {"mimeType": "image/png", "data": "<3 bytes image/png>"},
                "thoughtSignature": base64.b64encode(b"sig-2").decode(),
            },
        ],
    }
    assert body["contents"][1]["role"] == "user"


def test_fixed_size_model_sends_no_image_size() -> None:
    prepared = prepare("a cat", RequestOptions(model="legacy"), PRO)
    compiled = compile_request(prepared, [])
    assert rest_body(compiled)["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1"}


def test_user_content() -> None:
    compiled = compile_request(prepare("a cat", None, PRO), [])
    content = compiled.user_content()
    assert content.role == "user"
    assert content.parts == compiled.parts
