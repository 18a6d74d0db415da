"""TemporalRNN: a bidirectional LSTM over the frame vectors of a clip.

    frame vectors (B, T, C)
      -> LayerNorm                      (B, T, C)     the CNN's pooled features vary in scale
      -> bidirectional LSTM             (B, T, 2H)    forward and backward states, concatenated
      = temporal tokens, one per frame

T is only 16, so the recurrence is cheap next to the CNN. The LSTM always runs in float32:
its gates are sums over T steps, and the time it costs is too small for bf16 to pay.
"""

from __future__ import annotations

import torch
from torch import nn

from sora_encoder.config import TemporalRNNConfig


class TemporalRNN(nn.Module):
    def __init__(self, norm: nn.Module, lstm: nn.LSTM) -> None:
        super().__init__()
        assert lstm.batch_first and lstm.bidirectional, "TemporalRNN wants a batch_first BiLSTM"
        self.norm, self.lstm = norm, lstm
        self.out_dim = 2 * lstm.hidden_size

    def forward(self, frame_vec: torch.Tensor) -> torch.Tensor:
        assert frame_vec.ndim == 3, f"want (B, T, C), got {tuple(frame_vec.shape)}"
        with torch.autocast(frame_vec.device.type, enabled=False):
            x = self.norm(frame_vec.float())  # (B, T, C)
            out, _ = self.lstm(x)  # (B, T, 2H)
        return out


def build_temporal_rnn(*, cfg: TemporalRNNConfig, in_dim: int) -> TemporalRNN:
    lstm = nn.LSTM(in_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True)
    rnn = TemporalRNN(nn.LayerNorm(in_dim), lstm)
    init_temporal_rnn_(rnn)
    return rnn


def init_temporal_rnn_(rnn: TemporalRNN) -> None:
    """Uniform(+-1/sqrt(H)) weights (PyTorch's LSTM rule, written out so it cannot drift
    between versions), zero biases but forget-gate biases of 1 to remember by default."""
    bound = rnn.lstm.hidden_size**-0.5
    for name, p in rnn.lstm.named_parameters():
        if name.startswith("weight"):
            nn.init.uniform_(p, -bound, bound)
        else:  # bias_ih_l*, bias_hh_l*: gates are [input, forget, cell, output]
            nn.init.zeros_(p)
            if name.startswith("bias_ih"):
                h = rnn.lstm.hidden_size
                nn.init.ones_(p[h : 2 * h])
    nn.init.ones_(rnn.norm.weight)
    nn.init.zeros_(rnn.norm.bias)
