#!/usr/bin/env python3
"""Render the monitoring figures of docs/monitoring.md from a recorded episode, as the rqt perspective shows them.

    python scripts/render_monitoring_figures.py BAG_DIR docs/images [--perspective config/rqt/lingbot_va.perspective]

rqt is not installable on the development machines (no ROS distro), so instead of window captures this renders the
recorded topic contents each plugin of the perspective displays, read from the perspective file itself:

- every rqt_image_view: one message of its topic, pixel for pixel (``<topic name>.png``; the message from the
  middle of the episode, whose real key frames and predictions are both under way) and, for the live view's two
  topics, a strip of one message per chunk (``<topic name>_per_chunk.png``, from the ``_info`` sibling topic);
- every rqt_plot: its field paths against time (``<dock title>.png``), the same series rqt_plot draws.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lingbot_va_ros.common.conversions import MessageError, image_msg_to_rgb  # noqa: E402
from lingbot_va_ros.common.paths import config_path  # noqa: E402
from lingbot_va_ros.live_view.perspective import field_value, perspective_views, split_field_path  # noqa: E402
from lingbot_va_ros.recording.bag_reader import iter_messages, open_bag, topic_counts  # noqa: E402


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def _stamp(msg) -> tuple[int, str]:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec), str(msg.header.frame_id)


def render_image_view(reader, topic: str, out_dir: Path, counts: dict[str, int]) -> list[str]:
    n = counts.get(topic, 0)
    if not n:
        print(f"{topic}: not in the bag")
        return []
    infos = {}
    if counts.get(f"{topic}_info"):
        infos = {_stamp(m): m for _t, _n, m in iter_messages(reader, [f"{topic}_info"])}
    middle, per_chunk = None, {}
    for k, (_t, _name, msg) in enumerate(iter_messages(reader, [topic])):
        if k == n // 2:
            middle = msg
        info = infos.get(_stamp(msg))
        if info is not None and info.chunk_index not in per_chunk:
            per_chunk[info.chunk_index] = (info, msg)
    name = topic.strip("/").split("/")[-1]
    made = []
    plt.imsave(out_dir / f"{name}.png", image_msg_to_rgb(middle))
    made.append(f"{name}.png")
    if per_chunk:
        chunks = sorted(per_chunk)
        cols = min(4, len(chunks))
        rows = -(-len(chunks) // cols)
        first = image_msg_to_rgb(per_chunk[chunks[0]][1])
        aspect = first.shape[1] / first.shape[0]
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * aspect * cols, 3.4 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, c in zip(axes.flat, chunks):
            info, msg = per_chunk[c]
            try:
                ax.imshow(image_msg_to_rgb(msg))
            except MessageError:
                continue
            extra = f", pixel MSE {info.pixel_mse:.0f}" if info.pixel_mse >= 0 else ""
            ax.set_title(f"chunk {c}: key frame @{info.action_index}, {info.publish_delay:.2f} s after the chunk"
                         f"{extra}", fontsize=7)
        fig.suptitle(f"{topic}: one message per chunk ({len(chunks)} chunks)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / f"{name}_per_chunk.png", dpi=90)
        plt.close(fig)
        made.append(f"{name}_per_chunk.png")
    print(f"{topic}: {n} messages -> {', '.join(made)}")
    return made


def render_plot(reader, title: str, paths: tuple[str, ...], out_dir: Path, counts: dict[str, int]) -> str | None:
    split = {}
    for path in paths:
        try:
            split[path] = split_field_path(path, set(counts))
        except KeyError:
            print(f"{path}: topic not in the bag")
    if not split:
        return None
    series: dict[str, list[tuple[int, float]]] = {p: [] for p in split}
    for topic, t_ns, msg in iter_messages(reader, sorted({t for t, _f in split.values()})):
        for path, (t, fields) in split.items():
            if t == topic:
                try:
                    series[path].append((t_ns, float(field_value(msg, fields))))
                except (IndexError, AttributeError):
                    pass
    t0 = min((s[0][0] for s in series.values() if s), default=0)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for path, points in series.items():
        if points:
            t = np.array([(p[0] - t0) * 1e-9 for p in points])
            ax.plot(t, [p[1] for p in points], "o-" if len(points) < 50 else "-", ms=3, lw=1.1, label=path)
    ax.set_xlabel("time since the first sample [s]")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"{title} (rqt_plot)", fontsize=9)
    fig.tight_layout()
    name = f"{_slug(title)}.png"
    fig.savefig(out_dir / name, dpi=100)
    plt.close(fig)
    print(f"plot '{title}': {sum(len(s) for s in series.values())} samples -> {name}")
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bag")
    ap.add_argument("out")
    ap.add_argument("--perspective", default=str(config_path("rqt", "lingbot_va.perspective")))
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_bag(args.bag) as reader:
        counts = topic_counts(reader)
        for view in perspective_views(args.perspective):
            if view.plugin == "rqt_image_view/ImageView":
                render_image_view(reader, view.topics[0], out_dir, counts)
            elif view.plugin == "rqt_plot/Plot":
                render_plot(reader, view.title, view.topics, out_dir, counts)


if __name__ == "__main__":
    main()
