"""Where the configuration tree lives."""

from __future__ import annotations

from pathlib import Path

# conf/ beside the package: Hydra's config tree (config.yaml and one folder per group)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
