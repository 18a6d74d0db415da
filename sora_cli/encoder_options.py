"""The options of every command that runs the encoder, defined once:

    --checkpoint PATH   a checkpoint folder or .safetensors file
    --variant NAME      with no checkpoint: a seed-initialised model of this variant
    --device DEV        cpu, cuda or cuda:N
    --precision P       auto, fp32 or bf16

Unset, they are the service's settings (`Settings`: $SORA_CHECKPOINT, $SORA_VARIANT,
$SORA_PRECISION, else the shipped checkpoint and auto), so a command embeds as the
service's workers do. `sora train encoder` takes --variant, --device and --precision only
(it starts from --init-from, not --checkpoint) and leaves unset ones to its recipe.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from services.settings import Settings

PRECISIONS = ("auto", "fp32", "bf16")


def add_encoder_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    checkpoint: bool = True,
    precision: bool = True,
) -> None:
    if checkpoint:
        p.add_argument(
            "--checkpoint",
            metavar="PATH",
            help="checkpoint folder or .safetensors file (default: $SORA_CHECKPOINT, else the "
            "shipped one)",
        )
    p.add_argument(
        "--variant",
        help="model variant (e.g. sora-s): without --checkpoint, a seed-initialised model of it",
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    if precision:
        p.add_argument(
            "--precision",
            choices=PRECISIONS,
            help="precision (default: $SORA_PRECISION, else auto: bf16 where the runtime "
            "measures it faster and as accurate)",
        )


@dataclass(frozen=True)
class EncoderChoice:
    """Which encoder to load, the options resolved against the settings."""

    checkpoint: str | None  # None: $SORA_CHECKPOINT / the shipped one (sora_encoder decides)
    variant: str | None
    device: str | None
    precision: str


def encoder_choice(args: argparse.Namespace, settings: Settings | None = None) -> EncoderChoice:
    """The options, else the settings. A --checkpoint or --variant given on the command line
    replaces both of the settings' (a --variant alone means that variant, seed-initialised,
    whatever SORA_CHECKPOINT says)."""
    settings = settings or Settings.from_env()
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint or args.variant:
        model = (checkpoint, args.variant)
    else:
        model = (settings.checkpoint, settings.variant)
    precision = getattr(args, "precision", None) or settings.precision
    return EncoderChoice(*model, device=args.device, precision=precision)
