"""The contrastive training loop: a WindowDataset in, a normal Sora checkpoint out.

    for step in range(start, total):                      step -> (epoch, batch in epoch)
        windows = dataset.batch(order(seed, epoch)[batch])    uint8 (B, F, Hc, Wc, 3)
        views = make_views(windows, generator seeded by (seed, step))    (2B, T, 3, S, S)
        z = model.encode_video(views)      bf16 autocast on CUDA     (2B, D) Sora vectors
        loss = nt_xent(z[:B], z[B:], temperature)
             + arrow_weight * BCE(arrow_head(z), reversed)   windows played backwards, p 0.5
        AdamW step after clipping the gradient norm; LR: linear warm-up, then cosine

    out_dir/  config.json + model.safetensors   a normal checkpoint (load_checkpoint,
                                                `sora embed --checkpoint`, SORA_CHECKPOINT)
              train_state.pt     model, arrow head, optimizer, scheduler, step, RNG:
                                 what --resume reads
              train_config.json  the TrainConfig;  train_log.jsonl  one line per step

The loss is on the Sora vector itself (no separate projection head, unlike SimCLR): the
vector is what the index searches by cosine, so it is the space that must be invariant to
crops, re-encodes and overlays, and the checkpoint needs nothing beyond the model.

Reproducible: the batch order depends on (seed, epoch) and the augmentations on
(seed, step) only, so a run resumed at step k continues exactly as if it had not stopped
(bit for bit on a CPU; on a GPU up to the non-determinism of its kernels).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sora_encoder.checkpoint import load_checkpoint, save_checkpoint
from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config
from sora_encoder.train.augment import make_views
from sora_encoder.train.batchnorm import reestimate_batchnorm
from sora_encoder.train.config import CONFIG_NAME, TrainConfig
from sora_encoder.train.data import WindowDataset
from sora_encoder.train.loss import koleo, nt_xent, pair_accuracy

logger = logging.getLogger(__name__)

STATE_NAME = "train_state.pt"
LOG_NAME = "train_log.jsonl"
# Fields that may differ on --resume: they change neither the maths nor the data.
RESUMABLE_CHANGES = frozenset({"log_every", "checkpoint_every"})


@dataclass(frozen=True)
class Progress:
    """One progress report (every `log_every` steps and at the end)."""

    step: int  # steps done
    total: int  # steps planned
    epoch: int  # 1-based epoch of the last step
    epochs: int
    loss: float  # mean loss over the steps since the last report
    pair_acc: float  # of the last batch: views whose nearest neighbour is their twin
    lr: float
    clips_per_s: float  # windows (each two views) per second since the last report
    elapsed_s: float
    eta_s: float

    def line(self) -> str:
        return (
            f"step {self.step}/{self.total}  epoch {self.epoch}/{self.epochs}  "
            f"loss {self.loss:.4f}  pair-acc {self.pair_acc:.2f}  lr {self.lr:.2e}  "
            f"{self.clips_per_s:.1f} clips/s  elapsed {_hms(self.elapsed_s)}  "
            f"ETA {_hms(self.eta_s)}"
        )


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    version: str  # the model version of the checkpoint written last
    step: int  # steps done
    total_steps: int
    finished: bool  # False when stopped early (max_steps, time limit): --resume continues
    final_loss: float


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def lr_factor(step: int, *, warmup: int, total: int, min_frac: float) -> float:
    """The LR multiplier at `step`: linear warm-up over `warmup` steps, then cosine from 1 to
    `min_frac` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices and conv kernels; none on norms, biases and
    the learned embeddings (decaying them pulls positions and types towards zero)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim < 2 or leaf.endswith("_embed") or leaf == "cls":
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The window order of one epoch: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x50A]).permutation(n)


def step_seed(seed: int, step: int) -> int:
    """The augmentation seed of one step (independent of every other step)."""
    return int(np.random.default_rng([seed, step, 0xA06]).integers(2**62))


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def train_encoder(
    dataset: WindowDataset,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    time_limit_s: float | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Train `cfg.variant` on `dataset`; write checkpoints into `out_dir` (see the module
    docstring). `max_steps` / `time_limit_s` stop early with a resumable state.

    ValueError if the dataset has fewer than 2 windows, or, on resume, if the config or the
    data differ from the saved run (other than RESUMABLE_CHANGES).
    """
    out = Path(out_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(cfg.precision, dev)
    model_cfg = dataclasses.replace(get_model_config(cfg.variant), init_seed=cfg.seed)
    n = len(dataset)
    if n < 2:
        raise ValueError(f"need at least 2 windows to contrast, got {n}")
    batch = min(cfg.batch_size, n)
    if batch < cfg.batch_size:
        logger.warning("only %d windows: batch size %d instead of %d", n, batch, cfg.batch_size)
    per_epoch = n // batch
    total = cfg.epochs * per_epoch
    warmup = max(1, round(cfg.warmup_frac * total))
    cache_shape = dataset.window_shape  # (F, S, S, 3)
    assert cache_shape[0] >= model_cfg.input.num_frames, (
        f"cached windows hold {cache_shape[0]} frames, the model wants {model_cfg.input.num_frames}"
    )

    model = create_model(model_cfg)
    if cfg.init_from is not None and not resume:
        _init_weights(model, model_cfg, cfg.init_from)
    model = model.to(dev).train()
    # The arrow-of-time head: a logistic regression on the Sora vector; unused (no gradient,
    # so AdamW leaves it alone) when arrow_weight is 0. Initialised from the run's seed, not
    # the global RNG: the same seed gives the same run whatever ran before in the process.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        arrow_head = nn.Linear(model_cfg.projection.out_dim, 1).to(dev)
    groups = param_groups(model, cfg.weight_decay)
    groups.append({"params": list(arrow_head.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, partial(lr_factor, warmup=warmup, total=total, min_frac=cfg.min_lr_frac)
    )
    start = 0
    if resume:
        start = _restore(out, cfg, dataset, model, arrow_head, opt, sched, dev)
        logger.info("resuming at step %d of %d", start, total)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / LOG_NAME).unlink(missing_ok=True)
    _write_text(out / CONFIG_NAME, cfg.to_json())
    stop = total if max_steps is None else min(total, max_steps)

    gen = torch.Generator(device=dev)
    autocast = torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16")
    report = progress or (lambda p: logger.info("%s", p.line()))
    t0 = time.perf_counter()
    mark_t, mark_step, losses = t0, start, []
    version, loss_v, completed = "", float("nan"), start
    orders: dict[int, np.ndarray] = {}

    def indices(s: int) -> list[int]:
        epoch, i = divmod(s, per_epoch)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_order(cfg.seed, epoch, n)
        return orders[epoch][i * batch : (i + 1) * batch].tolist()

    log = (out / LOG_NAME).open("a", encoding="utf-8")
    pool = ThreadPoolExecutor(1)  # reads the next batch from the memory maps meanwhile
    try:
        pending = pool.submit(dataset.batch, indices(start)) if start < stop else None
        for step in range(start, stop):
            windows = pending.result()
            if step + 1 < stop:
                pending = pool.submit(dataset.batch, indices(step + 1))
            windows = windows.to(dev, non_blocking=True)  # (B, F, Hc, Wc, 3) uint8
            gen.manual_seed(step_seed(cfg.seed, step))
            with torch.no_grad():
                views = make_views(
                    windows, inp=model_cfg.input, aug=cfg.augment, generator=gen,
                    size=cfg.view_size,
                )  # fmt: skip  # (2B, T, 3, S, S)
                if cfg.arrow_weight > 0:  # both views of a window, backwards or not
                    backwards = torch.rand(batch, generator=gen, device=dev) < cfg.reverse_p
                    backwards = backwards.repeat(2)  # (2B,)
                    views = torch.where(backwards.view(-1, 1, 1, 1, 1), views.flip(1), views)
            with autocast:
                z = model.encode_video(views)  # (2B, D) float32, unit length
            loss = nt_xent(z[:batch], z[batch:], cfg.temperature)
            if cfg.koleo_weight > 0:
                loss = loss + cfg.koleo_weight * koleo(z[:batch], z[batch:])
            if cfg.arrow_weight > 0:
                logits = arrow_head(z.float()).squeeze(1)  # (2B,)
                arrow_loss = F.binary_cross_entropy_with_logits(logits, backwards.float())
                loss = loss + cfg.arrow_weight * arrow_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            lr = sched.get_last_lr()[0]
            sched.step()
            completed = step + 1
            loss_v = loss.item()
            if not math.isfinite(loss_v):
                raise FloatingPointError(
                    f"loss is {loss_v} at step {step + 1}; lower --lr or check the data "
                    f"(the last checkpoint in {out} is from before this step)"
                )
            done = step + 1
            losses.append(loss_v)
            epoch = step // per_epoch + 1
            entry = {"step": done, "epoch": epoch, "loss": float(f"{loss_v:.6g}"), "lr": lr,
                     "grad_norm": round(float(grad_norm), 4),
                     "time_s": round(time.perf_counter() - t0, 3)}  # fmt: skip
            log.write(json.dumps(entry) + "\n")
            last = done == stop
            if done % cfg.log_every == 0 or last:
                now = time.perf_counter()
                rate = (done - mark_step) * batch / max(now - mark_t, 1e-9)
                report(
                    Progress(
                        step=done,
                        total=total,
                        epoch=epoch,
                        epochs=cfg.epochs,
                        loss=sum(losses) / len(losses),
                        pair_acc=pair_accuracy(z[:batch], z[batch:]),
                        lr=lr,
                        clips_per_s=rate,
                        elapsed_s=now - t0,
                        eta_s=(total - done) * batch / max(rate, 1e-9),
                    )
                )
                mark_t, mark_step, losses = now, done, []
            timed_out = time_limit_s is not None and time.perf_counter() - t0 > time_limit_s
            if done % cfg.checkpoint_every == 0 or last or timed_out:
                log.flush()
                t_save = time.perf_counter()
                version = _save(out, model, arrow_head, model_cfg, opt, sched, done, cfg, dataset)
                mark_t += time.perf_counter() - t_save  # saving is not training time
            if timed_out and not last:
                logger.warning(
                    "time limit reached at step %d of %d; --resume continues", done, total
                )
                stop = done
                break
    except KeyboardInterrupt:
        # Keep what the finished steps learnt: save, then let the interrupt through.
        if completed > start:
            logger.warning("interrupted; saving step %d so that --resume can continue", completed)
            _save(out, model, arrow_head, model_cfg, opt, sched, completed, cfg, dataset)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        log.close()
    if not version:  # nothing left to do (resumed a finished run)
        version = _save(out, model, arrow_head, model_cfg, opt, sched, start, cfg, dataset)
    done = max(start, stop)
    if not math.isfinite(loss_v) and (out / LOG_NAME).is_file():
        loss_v = next((r["loss"] for r in reversed(read_log(out))), loss_v)
    return TrainResult(out, version, done, total, done >= total, loss_v)


def _init_weights(model: nn.Module, model_cfg, path: str) -> None:
    """Copy a checkpoint's weights into `model`; ValueError when its architecture differs."""
    source, source_cfg, version = load_checkpoint(path)
    mine = dataclasses.replace(model_cfg, init_seed=0)
    if mine != dataclasses.replace(source_cfg, init_seed=0):
        raise ValueError(f"init_from {path}: its architecture differs from {model_cfg.name}")
    model.load_state_dict(source.state_dict())
    logger.info("initialised from %s (%s)", path, version)


def _save(
    out, model, arrow_head, model_cfg, opt, sched, step: int, cfg: TrainConfig, dataset
) -> str:
    """The checkpoint (safetensors + config.json; BatchNorm re-estimated on clean windows
    when cfg.bn_windows) and then train_state.pt (the training weights as they are), each
    atomic."""
    shipped = model
    if cfg.bn_windows > 0:
        dev = next(model.parameters()).device
        shipped = reestimate_batchnorm(
            model, dataset, model_cfg.input, n_windows=cfg.bn_windows, device=dev
        )
    version = save_checkpoint(shipped, model_cfg, out)
    state = {
        "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arrow_head": {k: v.detach().cpu() for k, v in arrow_head.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "train_config": cfg.to_dict(),
        "data_fingerprint": dataset.fingerprint(),
        "model_version": version,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    tmp = out / f"{STATE_NAME}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / STATE_NAME)
    logger.info("checkpoint at step %d: %s (%s)", step, out, version)
    return version


def _restore(out: Path, cfg: TrainConfig, dataset, model, arrow_head, opt, sched, dev) -> int:
    path = out / STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = TrainConfig.from_dict(state["train_config"])
    changed = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(cfg, f.name)
    ]
    if changed:
        raise ValueError(f"cannot resume {out}: the config differs in {changed}")
    if state["data_fingerprint"] != dataset.fingerprint():
        raise ValueError(
            f"cannot resume {out}: the training files (or their decode settings) differ "
            "from the run being resumed"
        )
    if "arrow_head" not in state:
        raise ValueError(
            f"cannot resume {out}: its {STATE_NAME} predates the arrow-of-time head (an older "
            "version of the trainer); start a new run"
        )
    model.load_state_dict(state["model"])
    arrow_head.load_state_dict(state["arrow_head"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if dev.type == "cuda" and state["cuda_rng"]:
        with contextlib.suppress(RuntimeError):  # a different number of GPUs
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    step = int(state["step"])
    _truncate_log(out / LOG_NAME, step)
    return step


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past `step` (steps the interrupted run did after its last save)."""
    if not path.is_file():
        return
    keep = [
        line for line in path.read_text("utf-8").splitlines() if json.loads(line)["step"] <= step
    ]
    _write_text(path, "".join(line + "\n" for line in keep))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    """The per-step records of a run: step, epoch, loss, lr, grad_norm, time_s."""
    path = Path(out_dir) / LOG_NAME
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
