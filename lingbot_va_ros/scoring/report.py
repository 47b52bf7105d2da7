"""``lingbot-va-score report``: scores per task (paper protocol), per-trial plots from the bags, index.html and
scores.json."""
from __future__ import annotations

import datetime as _dt
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lingbot_va_ros.recording.bag_reader import find_bags
from lingbot_va_ros.scoring.annotation import Annotation, read_annotation
from lingbot_va_ros.scoring.bag_analysis import EpisodeAnalysis, analyse_bag
from lingbot_va_ros.scoring.protocol import ScoringError, TaskSummary, TrialScore, mean_over_tasks, summarize


@dataclass
class Trial:
    trial_id: str
    bag: Path
    annotation: Annotation
    score: TrialScore
    analysis: EpisodeAnalysis | None = None
    plots: dict[str, str] = field(default_factory=dict)       # name -> path relative to the report folder


@dataclass
class Report:
    summaries: list[TaskSummary]
    trials: list[Trial]
    unannotated: list[Path]
    problems: list[str]
    out_dir: Path

    @property
    def mean(self) -> tuple[float, float]:
        return mean_over_tasks(self.summaries)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def collect_trials(dirs: Iterable[str | Path]) -> tuple[list[Trial], list[Path], list[str]]:
    """Annotated bags under ``dirs`` (as trials), unannotated bags, and problems (invalid annotations)."""
    trials, unannotated, problems = [], [], []
    used: set[str] = set()
    for bag in find_bags(dirs):
        try:
            annotation = read_annotation(bag)
        except ScoringError as exc:
            problems.append(str(exc))
            continue
        if annotation is None:
            unannotated.append(bag)
            continue
        trial_id = bag.name if bag.name not in used else f"{bag.parent.name}/{bag.name}"
        used.add(trial_id)
        trials.append(Trial(trial_id, bag, annotation, annotation.trial(trial_id)))
    return trials, unannotated, problems


def build_report(dirs: Iterable[str | Path], out_dir: str | Path, plots: bool = True, max_frames: int = 4,
                 strip_chunks: int = 24) -> Report:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials, unannotated, problems = collect_trials(dirs)
    summaries = summarize(t.score for t in trials)  # raises ScoringError on inconsistent step lists
    for trial in trials:
        trial.analysis = analyse_bag(trial.bag, max_frames=max_frames if plots else 0,
                                     max_strip=strip_chunks if plots else 0)
        if trial.analysis.error:
            problems.append(f"{trial.bag}: {trial.analysis.error}")
        if plots:
            trial.plots = _trial_plots(trial, out)
    report = Report(summaries, trials, unannotated, problems, out)
    summary_plot = _summary_plot(summaries, out) if plots and summaries else ""
    (out / "scores.json").write_text(json.dumps(_scores_json(report), indent=2))
    (out / "index.html").write_text(_html(report, summary_plot))
    return report


# -- plots ---------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _trial_plots(trial: Trial, out: Path) -> dict[str, str]:
    a = trial.analysis
    if a is None or a.error:
        return {}
    plt = _pyplot()
    folder = out / "trials" / _slug(trial.trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    if a.chunks:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot([c.t_s for c in a.chunks], [1e3 * c.latency_s for c in a.chunks], "o-", ms=3)
        if a.control_period_s and len(a.chunks) > 1:
            # async: chunk n must be ready before chunk n-1 has finished executing, or the arm waits
            budget = [1e3 * prev.rows * a.control_period_s for prev in a.chunks[:-1]]
            ax.plot([c.t_s for c in a.chunks[1:]], budget, "--", color="gray", lw=1,
                    label="previous chunk's execution time")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("time since start [s]")
        ax.set_ylabel("inference latency [ms]")
        ax.set_title(f"{trial.trial_id}: inference latency per chunk")
        made["latency"] = _save(fig, folder / "latency.png", out, plt)
    if a.idle_source:
        fig, ax = plt.subplots(figsize=(7, 3))
        if a.idle_gaps:
            ax.bar([g.t_s for g in a.idle_gaps], [1e3 * g.duration_s for g in a.idle_gaps],
                   width=max(0.05, a.duration_s / 200), color="tab:red")
        ax.set_xlim(0, max(a.duration_s, 1e-3))
        ax.set_xlabel("time since start [s]")
        ax.set_ylabel("arm idle [ms]")
        ax.set_title(f"idle gaps ({a.idle_source}): {a.idle_total_s:.2f} s total, "
                     f"{100 * a.idle_fraction:.1f}% of the active time")
        made["idle"] = _save(fig, folder / "idle_gaps.png", out, plt)
    for k, (t_s, rgb) in enumerate(a.frames):
        path = folder / f"frames_{k}.png"
        plt.imsave(path, rgb)
        made[f"frames_{k}@{t_s:.1f}s"] = path.relative_to(out).as_posix()
    if a.predictions:
        made["prediction_strip"] = _prediction_strip(a, folder / "prediction_vs_real.png", out, plt)
    return made


def _prediction_strip(a: EpisodeAnalysis, path: Path, out: Path, plt, per_row: int = 6) -> str:
    """Per chunk, its prediction-vs-real image (real key frame k | the chunk's prediction of it), in chunk order,
    captioned with the chunk, k, the pixel error and the latent error of that chunk."""
    n = len(a.predictions)
    cols = min(per_row, n)
    rows = -(-n // cols)
    aspect = a.predictions[0].rgb.shape[1] / a.predictions[0].rgb.shape[0]
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * aspect * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, a.predictions):
        ax.imshow(p.rgb)
        latent = a.latent_mse.get(p.chunk_index)
        ax.set_title(f"chunk {p.chunk_index}: key frame @{p.action_index}\npixel MSE {p.pixel_mse:.0f}"
                     + (f", latent MSE {latent:.2f}" if latent is not None else ""), fontsize=7)
    fig.suptitle("real key frame | predicted, per chunk (/lingbot_va/prediction_vs_real)", fontsize=9)
    return _save(fig, path, out, plt)


def _summary_plot(summaries: list[TaskSummary], out: Path) -> str:
    plt = _pyplot()
    import numpy as np

    x = np.arange(len(summaries))
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(summaries)), 3.2))
    ax.bar(x - 0.2, [s.progress_score for s in summaries], 0.4, label="Progress Score")
    ax.bar(x + 0.2, [s.success_rate for s in summaries], 0.4, label="Success Rate")
    ax.set_xticks(x, [s.task for s in summaries], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    return _save(fig, out / "summary.png", out, plt)


def _save(fig, path: Path, out: Path, plt) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.relative_to(out).as_posix()


# -- machine-readable --------------------------------------------------------------------------------------
def _trial_json(t: Trial) -> dict[str, Any]:
    a = t.analysis
    data: dict[str, Any] = {"trial_id": t.trial_id, "bag": str(t.bag), "scores": list(t.score.scores),
                            "total": t.score.total, "max_score": t.score.max_score, "full_score": t.score.full_score,
                            "annotator": t.annotation.annotator, "notes": t.annotation.notes}
    if a is not None:
        data.update({"episode_id": a.info.get("episode_id", t.annotation.episode_id),
                     "prompt": a.info.get("prompt", ""),
                     "outcome": a.info.get("outcome", ""), "pipeline_mode": a.info.get("pipeline_mode", ""),
                     "checkpoint_hash": a.info.get("checkpoint_hash", ""), "duration_s": a.duration_s,
                     "chunks": len(a.chunks), "latency": a.latency_stats(), "idle_total_s": a.idle_total_s,
                     "idle_fraction": a.idle_fraction, "idle_source": a.idle_source, "bag_error": a.error,
                     "plots": t.plots,
                     "live_view": {"predicted_frames_per_chunk": {str(c): n for c, n in
                                                                  sorted(a.predicted_frames_per_chunk.items())},
                                   "prediction_vs_real": [{"chunk_index": p.chunk_index, "action_index": p.action_index,
                                                           "pixel_mse": p.pixel_mse} for p in a.predictions],
                                   "latent_mse": {str(c): v for c, v in sorted(a.latent_mse.items())}}})
    return data


def _scores_json(report: Report) -> dict[str, Any]:
    ps, sr = report.mean
    by_task = {s.task: [t for t in report.trials if t.score.task == s.task] for s in report.summaries}
    return {
        "protocol": "per step: 1 first try, 0.5 after retry, 0 failed; PS = mean total / max x 100; "
                    "SR = full-score trials / N x 100",
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tasks": [{"task": s.task, "steps": list(s.steps), "n_trials": s.n_trials, "max_score": s.max_score,
                   "mean_total": s.mean_total, "progress_score": s.progress_score, "success_rate": s.success_rate,
                   "full_score_trials": s.full_score_trials,
                   "per_step": [{"step": st, "mean_score": m, "first_try_rate": f}
                                for st, m, f in zip(s.steps, s.step_mean, s.step_first_try)],
                   "trials": [_trial_json(t) for t in by_task[s.task]]} for s in report.summaries],
        "mean": {"progress_score": ps, "success_rate": sr, "n_tasks": len(report.summaries)},
        "unannotated": [str(p) for p in report.unannotated],
        "problems": report.problems,
    }


# -- html ------------------------------------------------------------------------------------------------
_CSS = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}th{background:#eee}
.num{text-align:right}img{max-width:100%;margin:4px 0}.warn{color:#a40}.frames img{max-height:260px}
details{margin:0.5em 0}"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt_scores(scores: tuple[float, ...]) -> str:
    return " ".join("1" if s == 1 else ("½" if s == 0.5 else "0") for s in scores)


def _html(report: Report, summary_plot: str) -> str:
    ps, sr = report.mean
    rows = "".join(
        f"<tr><td><a href='#{_e(_slug(s.task))}'>{_e(s.task)}</a></td><td class=num>{len(s.steps)}</td>"
        f"<td class=num>{s.n_trials}</td><td class=num>{s.progress_score:.1f}</td>"
        f"<td class=num>{s.success_rate:.1f}</td>"
        f"<td class=num>{s.full_score_trials}</td><td class=num>{s.mean_total:.2f} / {s.max_score:g}</td></tr>"
        for s in report.summaries)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>LingBot-VA trial report</title>"
             f"<style>{_CSS}</style></head><body><h1>LingBot-VA trial report</h1>",
             f"<p>{len(report.trials)} scored trials in {len(report.summaries)} tasks. Protocol (paper App. A): each "
             "step 1 = first try, ½ = after a retry, 0 = failed; Progress Score = mean total / max × 100; Success "
             "Rate = trials with the full score / N × 100.</p>",
             "<table><tr><th>task</th><th>steps</th><th>trials</th><th>Progress Score</th><th>Success Rate</th>"
             f"<th>full-score trials</th><th>mean total</th></tr>{rows}"
             f"<tr><th>mean</th><th></th><th></th><th class=num>{ps:.1f}</th><th class=num>{sr:.1f}</th>"
             "<th></th><th></th></tr></table>"]
    if summary_plot:
        parts.append(f"<img src='{_e(summary_plot)}' alt='scores per task'>")
    if report.problems:
        items = "".join(f"<li class=warn>{_e(p)}</li>" for p in report.problems)
        parts.append(f"<h2 class=warn>Problems</h2><ul>{items}</ul>")
    for s in report.summaries:
        parts.append(_task_html(s, [t for t in report.trials if t.score.task == s.task]))
    if report.unannotated:
        parts.append("<h2>Not annotated (not scored)</h2><p>Annotate with <code>lingbot-va-score annotate BAG --task "
                     "NAME --steps ... --scores ...</code></p><ul>"
                     + "".join(f"<li>{_e(p)}</li>" for p in report.unannotated) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _task_html(s: TaskSummary, trials: list[Trial]) -> str:
    steps = "".join(f"<tr><td>{k + 1}</td><td>{_e(st)}</td><td class=num>{m:.2f}</td>"
                    f"<td class=num>{100 * f:.0f}%</td></tr>"
                    for k, (st, m, f) in enumerate(zip(s.steps, s.step_mean, s.step_first_try)))
    rows = []
    for t in trials:
        a = t.analysis
        lat = a.latency_stats() if a else {}
        info = a.info if a else {}
        cells = [f"<a href='#{_e(_slug('trial-' + t.trial_id))}'>{_e(t.trial_id)}</a>", _e(info.get("prompt", "")),
                 _e(info.get("outcome", "")), _fmt_scores(t.score.scores),
                 f"{t.score.total:g} / {t.score.max_score:g}", str(len(a.chunks)) if a else "",
                 f"{1e3 * lat['median_s']:.0f} / {1e3 * lat['p95_s']:.0f}" if lat else "",
                 f"{a.idle_total_s:.2f} s ({100 * a.idle_fraction:.0f}%)" if a and a.idle_source else "",
                 f"{a.duration_s:.1f}" if a and not a.error else ""]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    details = "".join(_trial_html(t) for t in trials)
    return (f"<h2 id='{_e(_slug(s.task))}'>{_e(s.task)}: PS {s.progress_score:.1f}, SR {s.success_rate:.1f} "
            f"({s.n_trials} trials)</h2><table><tr><th>#</th><th>step</th><th>mean score</th><th>first try</th></tr>"
            f"{steps}</table><table><tr><th>trial</th><th>prompt</th><th>outcome</th><th>step scores</th><th>total</th>"
            f"<th>chunks</th><th>latency median / p95 [ms]</th><th>arm idle</th><th>duration [s]</th></tr>"
            f"{''.join(rows)}</table>{details}")


def _trial_html(t: Trial) -> str:
    a = t.analysis
    body = [f"<p>bag <code>{_e(t.bag)}</code>"]
    if a is not None and a.info:
        keys = ("episode_id", "pipeline_mode", "checkpoint_hash", "embodiment", "reason", "recording_state")
        body.append("; " + ", ".join(f"{k}: <code>{_e(a.info[k])}</code>" for k in keys if a.info.get(k)))
    body.append("</p>")
    if t.annotation.notes:
        body.append(f"<p>notes: {_e(t.annotation.notes)}</p>")
    if a is not None and a.error:
        body.append(f"<p class=warn>bag not readable: {_e(a.error)}</p>")
    for name in ("latency", "idle"):
        if name in t.plots:
            body.append(f"<img src='{_e(t.plots[name])}' alt='{name}'>")
    frames = [(k, v) for k, v in t.plots.items() if k.startswith("frames_")]
    if frames:
        times = ", ".join(_e(k.split("@")[1]) for k, _ in frames)
        images = "".join(f"<img src='{_e(v)}' alt='{_e(k)}'>" for k, v in frames)
        body.append(f"<div class=frames><p>live view (real | predicted) at {times}</p>{images}</div>")
    elif a is not None and not a.error:
        body.append("<p>no predicted frames recorded (live view disabled, or topic not recorded)</p>")
    if "prediction_strip" in t.plots and a is not None:
        chunks = sorted(set(a.predicted_frames_per_chunk) | {c.chunk_index for c in a.chunks})
        rows = "".join(
            f"<tr><td class=num>{c}</td><td class=num>{a.predicted_frames_per_chunk.get(c, 0)}</td>"
            f"<td class=num>{_e(next((p.action_index for p in a.predictions if p.chunk_index == c), ''))}</td>"
            f"<td class=num>{next((f'{p.pixel_mse:.0f}' for p in a.predictions if p.chunk_index == c), '')}</td>"
            f"<td class=num>{f'{a.latent_mse[c]:.3f}' if c in a.latent_mse else ''}</td></tr>" for c in chunks)
        body.append("<div class=strip><p>prediction vs real per chunk: the real key frame k beside what the chunk "
                    "predicted for it</p>"
                    f"<img src='{_e(t.plots['prediction_strip'])}' alt='prediction vs real per chunk'></div>"
                    "<table><tr><th>chunk</th><th>predicted-frame messages</th><th>key frame after action</th>"
                    f"<th>pixel MSE</th><th>latent MSE (grounding)</th></tr>{rows}</table>")
    return (f"<details id='{_e(_slug('trial-' + t.trial_id))}'><summary>trial {_e(t.trial_id)}: "
            f"{t.score.total:g} / {t.score.max_score:g}</summary>{''.join(body)}</details>")
