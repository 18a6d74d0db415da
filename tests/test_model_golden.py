"""Golden outputs: each shipped variant, initialised from its seed, on a fixed input, must
give the stored vector values on the CPU in float32. A change to any layer, initialisation or
default fails here; if the change is intended, regenerate the files and commit them:

    python tests/test_model_golden.py --update      # rewrites tests/golden/<variant>.json

The input is closed-form (sines), not drawn from an RNG, and the weights come from
torch.manual_seed, whose CPU streams are stable across torch releases; the tolerance (1e-4
on unit-vector entries of about 0.06) covers kernel differences between torch 2.11 and 2.13.
`test_golden_tolerance_catches_a_change_in_each_part` shows the test can fail: re-drawing a
single tensor of any part (its values shuffled, as a changed initialisation would) moves the
output by far more than the tolerance.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config, list_models

GOLDEN = Path(__file__).parent / "golden"
FIRST = 8  # values stored per clip
ATOL = 1e-4
CLIPS = 2


def golden_input(name: str) -> torch.Tensor:
    """(2, T, 3, S, S): smooth sines that differ by clip, frame, channel and position."""
    inp = get_model_config(name).input
    T, S = inp.num_frames, inp.image_size
    b = torch.arange(CLIPS, dtype=torch.float64).view(-1, 1, 1, 1, 1)
    t = torch.arange(T, dtype=torch.float64).view(1, -1, 1, 1, 1)
    c = torch.arange(3, dtype=torch.float64).view(1, 1, -1, 1, 1)
    y = torch.arange(S, dtype=torch.float64).view(1, 1, 1, -1, 1)
    x = torch.arange(S, dtype=torch.float64).view(1, 1, 1, 1, -1)
    phase = 0.7 * b + 0.3 * t + 1.1 * c
    frames = torch.sin(2 * math.pi * (x * (1 + b) + y * (2 + c)) / S + phase)
    frames = frames + 0.5 * torch.cos(2 * math.pi * (x - y) * (1 + t % 3) / S)
    return frames.to(torch.float32)  # (2, T, 3, S, S), values in [-1.5, 1.5]


def compute(name: str, model: torch.nn.Module | None = None) -> torch.Tensor:
    model = model if model is not None else create_model(name)
    with torch.no_grad():
        return model.eval().encode_video(golden_input(name))  # (2, D)


def stored(name: str) -> torch.Tensor:
    data = json.loads((GOLDEN / f"{name}.json").read_text("utf-8"))
    assert data["variant"] == name and data["init_seed"] == get_model_config(name).init_seed
    return torch.tensor(data["first_values"], dtype=torch.float32)  # (2, FIRST)


@pytest.mark.parametrize("name", list_models())
def test_golden_output(name):
    assert (GOLDEN / f"{name}.json").is_file(), f"no golden file for {name}: run --update"
    got = compute(name)[:, :FIRST]
    torch.testing.assert_close(got, stored(name), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "part",
    ["frame_cnn.stem.conv.weight", "frame_cnn.stages.1.1.branch.1.conv.weight",
     "temporal_rnn.lstm.weight_hh_l0", "fusion.blocks.0.attn.qkv.weight",
     "fusion.embed.cell_embed", "projection.weight"],
)  # fmt: skip
def test_golden_tolerance_catches_a_change_in_each_part(part):
    model = create_model("sora-t")
    with torch.no_grad():
        p = dict(model.named_parameters())[part]
        g = torch.Generator().manual_seed(0)
        p.copy_(p.flatten()[torch.randperm(p.numel(), generator=g)].view_as(p))
    change = (compute("sora-t", model)[:, :FIRST] - stored("sora-t")).abs().max().item()
    assert change > 10 * ATOL, f"re-drawing {part} moved the output by only {change:.2e}"


def update() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name in list_models():
        vec = compute(name)
        data = {
            "variant": name,
            "init_seed": get_model_config(name).init_seed,
            "input": "tests/test_model_golden.py:golden_input (closed form)",
            "made_with_torch": torch.__version__,
            "first_values": [[round(v, 7) for v in row] for row in vec[:, :FIRST].tolist()],
        }
        (GOLDEN / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n", "utf-8")
        print(f"wrote {GOLDEN / name}.json")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: python {sys.argv[0]} --update")
    update()
