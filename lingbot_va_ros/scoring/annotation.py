"""``annotation.yaml``: a human's per-step scores of one recorded trial, kept next to the bag (never inside it,
so the recording stays exactly as recorded)."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import yaml

from lingbot_va_ros.recording.bag_reader import bag_dir
from lingbot_va_ros.recording.bag_writer import write_yaml_atomic
from lingbot_va_ros.scoring.protocol import STEP_SCORES, ScoringError, TrialScore, validate_step_scores

ANNOTATION_FILE = "annotation.yaml"
FORMAT = "lingbot_va_annotation/1"


@dataclass(frozen=True)
class Annotation:
    task: str
    steps: tuple[str, ...]
    scores: tuple[float, ...]
    episode_id: str = ""
    annotator: str = ""
    notes: str = ""
    annotated_at: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "scores", validate_step_scores(self.scores, self.steps))
        if not self.task.strip():
            raise ScoringError("an annotation needs a task name")

    def trial(self, trial_id: str) -> TrialScore:
        return TrialScore(trial_id, self.task, self.steps, self.scores)

    def to_yaml_dict(self) -> dict:
        t = self.trial("")
        return {"format": FORMAT, "task": self.task, "steps": list(self.steps),
                "scores": [int(s) if s.is_integer() else s for s in self.scores],
                "total": t.total, "max_score": t.max_score, "full_score": t.full_score,
                "episode_id": self.episode_id, "annotator": self.annotator, "notes": self.notes,
                "annotated_at": self.annotated_at}


def annotation_path(bag: str | Path) -> Path:
    return bag_dir(bag) / ANNOTATION_FILE


def read_annotation(bag: str | Path) -> Annotation | None:
    path = annotation_path(bag)
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text()) or {}
    try:
        return Annotation(task=str(data["task"]), steps=tuple(str(s) for s in data["steps"]),
                          scores=tuple(data["scores"]), episode_id=str(data.get("episode_id") or ""),
                          annotator=str(data.get("annotator") or ""), notes=str(data.get("notes") or ""),
                          annotated_at=str(data.get("annotated_at") or ""))
    except (KeyError, TypeError) as exc:
        raise ScoringError(f"{path}: not a valid annotation (missing {exc})") from None
    except ScoringError as exc:
        raise ScoringError(f"{path}: {exc}") from None


def write_annotation(bag: str | Path, annotation: Annotation, overwrite: bool = False) -> Path:
    path = annotation_path(bag)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (task '{read_annotation(bag).task}'); pass --force to replace it")
    if not annotation.annotated_at:
        annotation = Annotation(**{**annotation.__dict__,
                                   "annotated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    write_yaml_atomic(path, annotation.to_yaml_dict())
    return path


def prompt_scores(steps: Sequence[str], ask: Callable[[str], str] | None = None,
                  say: Callable[[str], None] = print) -> tuple[float, ...]:
    """Ask for each step's score until a valid one is given (interactive annotate)."""
    ask = ask or input
    say("Score each step: 1 = first try, 0.5 = after a retry, 0 = failed (also: y = 1, r = 0.5, n = 0).")
    aliases = {"y": 1.0, "yes": 1.0, "r": 0.5, "retry": 0.5, "n": 0.0, "no": 0.0}
    scores = []
    for i, step in enumerate(steps, 1):
        while True:
            answer = ask(f"  step {i}/{len(steps)} '{step}': ").strip().lower()
            try:
                value = aliases[answer] if answer in aliases else float(answer)
            except ValueError:
                value = None
            if value in STEP_SCORES:
                scores.append(value)
                break
            say("    please answer 1, 0.5 or 0")
    return tuple(scores)
