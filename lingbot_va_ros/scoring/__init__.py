"""Trial scoring per the LingBot-VA real-world protocol (annotation.yaml next to each bag) and reports with plots
from the bags; see docs/scoring.md."""
