"""Step lists of the paper's six real-world tasks (spec §8.3), so ``annotate --task make_breakfast`` needs no
``--steps``. Any other task just passes its own ``--steps``."""
from __future__ import annotations

PAPER_TASKS: dict[str, tuple[str, ...]] = {
    "make_breakfast": ("grasp plate", "grasp bread", "grasp fork", "insert bread", "press toaster",
                       "grasp kettle", "place apple", "grasp cup", "pour water", "serve"),
    "pick_screws": ("grab paper", "pour screws", "screw 1", "screw 2", "screw 3"),
    "insert_tubes": ("grasp tube 1", "insert tube 1", "grasp tube 2", "insert tube 2", "grasp tube 3",
                     "insert tube 3"),
    "unpack_delivery": ("grab knife", "push blade", "handover", "cut seal", "open lid"),
    "fold_clothes": ("fold in half", "fold left sleeve", "fold right sleeve", "fold again", "flatten", "place"),
    "fold_pants": ("fold at waist", "fold legs", "place"),
}


def task_key(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def preset_steps(task: str) -> tuple[str, ...] | None:
    return PAPER_TASKS.get(task_key(task))


def parse_steps(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    if not steps:
        raise ValueError("--steps needs at least one step name (comma separated)")
    return steps
