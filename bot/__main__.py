"""Command line: `python -m bot run | prompt validate | prompt compile | render | describe`.

Exit statuses: 0 ok, 1 a problem with the input (invalid spec, failed generation),
2 a configuration or usage error. Render failures have their own statuses (see bot.render).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import ConfigError, load_settings, require
from bot.logging_setup import setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Nano Banana Discord bot: run it, or check and render JSON prompts offline.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="start the Discord bot", description="Start the Discord bot.")

    prompt = sub.add_parser("prompt", help="check or compile JSON prompt files")
    prompt_sub = prompt.add_subparsers(dest="prompt_command", required=True, metavar="ACTION")
    validate = prompt_sub.add_parser(
        "validate",
        help="validate JSON prompt files",
        description="Validate JSON prompt files; one line per problem, exit 1 if any.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--model", default=None, help="model alias or id (default: settings)")

    compile_ = prompt_sub.add_parser(
        "compile",
        help="print the exact Gemini REST request body for a prompt file",
        description="Print the exact Gemini REST request body (JSON) for a prompt file.",
    )
    compile_.add_argument("file", type=Path, metavar="FILE")
    compile_.add_argument("--model", default=None, help="model alias or id (default: settings)")
    compile_.add_argument("--with-images", action="store_true", help="include image data as base64")
    compile_.add_argument(
        "--image",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="a local image for attachment:N references (repeat, in order)",
    )

    render = sub.add_parser(
        "render",
        help="one generation from a prompt file, without Discord",
        description="Generate from a JSON prompt file and write the image(s) and a JSON record.",
    )
    render.add_argument("file", type=Path, metavar="FILE")
    render.add_argument("--out", type=Path, required=True, metavar="DIR")
    render.add_argument("--model", default=None, help="model alias or id (default: settings)")
    render.add_argument(
        "--image",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="a local image for attachment:N references (repeat, in order)",
    )
    describe = sub.add_parser(
        "describe",
        help="describe an image as a JSON prompt, without Discord",
        description=(
            "Describe an image as a JSON prompt (spec) with DESCRIBE_MODEL; the spec goes to "
            "stdout (or --out), the summary and cost to stderr."
        ),
    )
    describe.add_argument("image", type=Path, metavar="IMAGE")
    describe.add_argument(
        "--detail", choices=("brief", "standard", "full"), default="standard", help="how much detail"
    )
    describe.add_argument(
        "--model", default=None, help="image model the spec is checked for (default: settings)"
    )
    describe.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the spec here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        # Offline commands print one line per outcome; only the bot logs at INFO.
        level = settings.log_level
        if args.command != "run" and level != "DEBUG":
            level = "CRITICAL"
        setup_logging(level, settings.secrets())
        if args.command == "run":
            require(settings, "DISCORD_TOKEN", "GEMINI_API_KEY")
            from bot.client import run_bot

            run_bot(settings)
            return 0
        if args.command == "prompt":
            from bot.cli import prompt as prompt_cli

            if args.prompt_command == "validate":
                return prompt_cli.validate_files(args.files, model=args.model, settings=settings)
            return prompt_cli.compile_file(
                args.file,
                model=args.model,
                settings=settings,
                with_images=args.with_images,
                images=args.image,
            )
        if args.command == "render":
            require(settings, "GEMINI_API_KEY")
            from bot.cli.render import render_file

            return render_file(
                args.file, out=args.out, model=args.model, settings=settings, images=args.image
            )
        if args.command == "describe":
            require(settings, "GEMINI_API_KEY")
            from bot.cli.describe import describe_file

            return describe_file(
                args.image, settings=settings, detail=args.detail, model=args.model, out=args.out
            )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
