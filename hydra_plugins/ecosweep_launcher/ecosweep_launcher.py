"""Hydra launcher shim: Hydra discovers launchers only under ``hydra_plugins``.

All logic lives in :mod:`ecosweep.cli`; this file only registers the launcher as
``hydra/launcher=ecosweep`` (selected by ``conf/config.yaml``).
"""


from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class EcosweepLauncherConf:
    _target_: str = "hydra_plugins.ecosweep_launcher.ecosweep_launcher.EcosweepLauncher"
    wait: bool = False  # `python -m ecosweep --wait`: wait for another command writing the same study folders


ConfigStore.instance().store(group="hydra/launcher", name="ecosweep", node=EcosweepLauncherConf,
                             provider="ecosweep")


class EcosweepLauncher(Launcher):
    """Dispatches every job of a sweep to Ray actors at once (see ecosweep.cli.launch_sweep)."""

    def __init__(self, wait: bool = False) -> None:
        self.wait = wait
        self.config: Optional[Any] = None
        self.hydra_context: Optional[Any] = None
        self.task_function: Optional[Any] = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[Any]:
        from ecosweep.cli.run import launch_sweep  # the shim stays importable without ecosweep's dependencies

        return launch_sweep(self, job_overrides, wait=self.wait)
