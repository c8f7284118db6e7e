"""run.on_nonfinite: no NaN or infinity reaches a checkpoint.

Each step's loss parts (the mean over its micro-batches, so a NaN in any one shows) and, outside
fp16, the global gradient norm (finite losses can still give an infinite gradient) are checked;
under fp16 the GradScaler already skips a step whose gradients overflowed. `stop` keeps the first
bad step on the device and reads it back only at log and checkpoint steps (no host sync per
step), so a checkpoint is written only after a clean interval; `skip` needs the answer before the
update (one sync per step) and drops the step. The weights are checked once more before a save.
"""

from __future__ import annotations

from pathlib import Path

import torch

from plaml_lab.errors import NonFiniteLossError
from plaml_lab.method import LOSS_KEYS
from plaml_lab.runs import distributed as du
from plaml_lab.runs.checkpoint import nonfinite_tensors

# What a step's check looks at: its loss parts, then the global gradient norm.
CHECKED = (*LOSS_KEYS, "grad_norm")
# Only run.on_nonfinite may change on resume (it is among runs.folder.RESUMABLE_KEYS); the rest
# trains another run.
_NEW_RUN = "a lower optim.blr or an optim.clip_grad is a new run (--force-new or another --out)"
_ADVICE = ("re-run the same command with run.on_nonfinite=skip to resume from it skipping such "
           f"steps; {_NEW_RUN}")


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of the parameters' gradients (0-d, on their device; no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())


class FiniteGuard:
    """One run's non-finite policy. last: its last.pt; saved_step: the step last.pt holds (None
    before the run wrote one), kept up to date by the caller after each save."""

    def __init__(self, mode: str, check_grads: bool, device: torch.device, last: Path,
                 saved_step: int | None):
        self.mode, self.check_grads, self.last, self.saved_step = mode, check_grads, last, saved_step
        # first non-finite step and which of CHECKED were bad, kept on the device
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_parts = torch.zeros(len(CHECKED), dtype=torch.bool, device=device)

    def skip_step(self, step: int, parts: torch.Tensor, params: list[torch.Tensor]) -> bool:
        """After the backward pass of `step` (0-based): True when its update must be dropped
        (skip mode); in stop mode, remember the first bad step and return False."""
        checked = torch.cat([parts, grad_norm(params).view(1)]) if self.check_grads else parts
        finite = torch.isfinite(checked)
        if self.mode == "skip":
            ok = finite.all().to(torch.int32)
            if du.is_initialized():  # every rank must agree, or their weights would diverge
                torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
            return not bool(ok)
        newly_bad = (~finite.all()) & (self.bad_step < 0)
        self.bad_step = torch.where(newly_bad, torch.full_like(self.bad_step, step), self.bad_step)
        n = len(finite)
        self.bad_parts[:n] = torch.where(newly_bad, ~finite, self.bad_parts[:n])
        return False

    def _kept(self) -> str:
        return (f"{self.last} keeps step {self.saved_step}, the last finite one"
                if self.saved_step is not None else "no checkpoint was written")

    def raise_if_bad(self) -> None:
        """Stop mode, at a log or checkpoint step: NonFiniteLossError naming the first bad step."""
        step = int(self.bad_step)  # host sync, only at log / checkpoint steps
        if step >= 0:
            parts = [k for k, bad in zip(CHECKED, self.bad_parts.tolist()) if bad and k != "loss"]
            what = "gradient norm" if parts == ["grad_norm"] else (
                ", ".join(p for p in parts if p != "grad_norm") or "loss")
            raise NonFiniteLossError(f"non-finite loss at step {step + 1} ({what} not finite); "
                                     f"{self._kept()}; {_ADVICE}")

    def check_weights(self, model: torch.nn.Module, step: int) -> None:
        """Before a save: an update that made a weight non-finite is never written."""
        bad = nonfinite_tensors(model.state_dict())
        if bad:
            raise NonFiniteLossError(
                f"non-finite weights after step {step} ({len(bad)} tensors, e.g. {bad[0]}); "
                f"{self._kept()}; {_ADVICE if self.mode == 'stop' else _NEW_RUN}")
