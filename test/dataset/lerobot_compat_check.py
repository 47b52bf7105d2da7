"""Run INSIDE a lerobot==0.3.3 environment (not the project venv): load a dataset with LeRobotDataset and dump every
row's numbers (JSON) and decoded frames (raw uint8 files, no pickle) for test_dataset_lerobot_format.py to compare.

    /tmp/lerobot_venv/bin/python test/dataset/lerobot_compat_check.py DATASET_ROOT OUT_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def main(root: str, out: str) -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # pyav: torchcodec needs FFmpeg shared libraries on the system, which are optional here
    ds = LeRobotDataset("local/lingbot_va_export", root=root, video_backend="pyav")
    dump = {"num_frames": ds.num_frames, "num_episodes": ds.num_episodes, "action": [], "observation.state": [],
            "timestamp": [], "task": []}
    cams = ds.meta.video_keys
    files = {k: open(out_dir / f"{k.split('.')[-1]}.u8", "wb") for k in cams}
    for i in range(len(ds)):
        item = ds[i]
        dump["action"].append(item["action"].numpy().tolist())
        dump["observation.state"].append(item["observation.state"].numpy().tolist())
        dump["timestamp"].append(float(item["timestamp"]))
        dump["task"].append(item["task"])
        for k in cams:   # float CHW in 0..1 -> uint8 HWC
            frame = np.round(item[k].numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)
            files[k].write(frame.tobytes())
    for f in files.values():
        f.close()
    (out_dir / "rows.json").write_text(json.dumps(dump))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
