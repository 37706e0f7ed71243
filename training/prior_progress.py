"""The prior's wall-clock budget and honest progress, as transformers Trainer callbacks.

A time budget moves the last step (and the cosine's end) to where the budget runs out (TimeBudget, StepPlan); the
progress bar's total follows that plan, so its ETA is the budget's (PlannedProgress); RunStart records the step a
train() call starts from, so samples per second count the steps run in the measured wall time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any


class StepPlan:
    """The step at which the cosine schedule ends; a time budget moves it during the run (TimeBudget), and
    `fitted` says whether it has yet (until then the number of steps that fit is unknown)."""

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps, self.warmup_steps, self.fitted = total_steps, warmup_steps, False

    def lr_factor(self, step: int) -> float:
        """Linear warmup, then cosine to zero at total_steps (transformers' cosine schedule, with a movable end)."""
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def time_budget_callback(plan: StepPlan, budget_seconds: float, skip_steps: int = 3, every: int = 10,
                         clock: Callable[[], float] = time.monotonic) -> Any:
    """A TrainerCallback that ends the run where the wall-clock budget runs out, with the schedule ending there.

    Every `every` steps it re-estimates the mean step time (evaluations and saves included, the first
    `skip_steps` left out as warm-up) and sets the last step to what fits, never past max_steps."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start, self.max_steps, self.after_skip = clock(), state.max_steps, None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            now, step = clock(), state.global_step
            if step == skip_steps:
                self.after_skip = now
            if self.after_skip is None or step <= skip_steps or step % every:
                return
            seconds_per_step = (now - self.after_skip) / (step - skip_steps)
            fits = step + int((budget_seconds - (now - self.start)) / seconds_per_step)
            plan.total_steps = state.max_steps = max(step + 1, min(self.max_steps, fits))
            plan.fitted = True

    return TimeBudget()


def planned_progress_callback(plan: StepPlan) -> Any:
    """The Trainer's progress bar with its total from the plan: under a time budget, the steps that fit (no total,
    and so no ETA, until the first estimate), so the bar's ETA is the budget's, not max_steps'."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import ProgressCallback

    class PlannedProgress(ProgressCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=state.max_steps if plan.fitted else None, dynamic_ncols=True)
            self.current_step = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.training_bar is not None and plan.fitted:
                self.training_bar.total = state.max_steps
            super().on_step_end(args, state, control, **kwargs)

    return PlannedProgress()


def run_start_callback(trainer: Any) -> Any:
    """A TrainerCallback that records the step this train() call starts from (after a resume: the checkpoint's),
    so the samples per second count only the steps run in the measured wall time."""
    from transformers import TrainerCallback

    class RunStart(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trainer.first_step = state.global_step

    return RunStart()


def close_progress_bars(trainer: Any) -> None:
    """Close the Trainer's progress bars, which a run stopped by an exception (Ctrl-C) leaves open, so that what is
    printed next starts a line of its own and no bar is redrawn after it."""
    from transformers.trainer_callback import ProgressCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            for bar in (callback.training_bar, callback.prediction_bar):
                if bar is not None:
                    bar.close()
