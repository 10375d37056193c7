"""``python -m ecosweep [--wait] [-m] [overrides]``: Hydra composes the cells, ecosweep plans, measures and reports.

One cell, or with ``-m`` (or an experiment that sets ``hydra.mode: MULTIRUN``) a grid that the ecosweep launcher
(``hydra_plugins/ecosweep_launcher``) hands to :func:`launch_sweep` whole. Both paths end in :func:`execute`:
plan and validate every cell first (a bad value ends the command with one message and exit status 2 before
anything loads or any result is written), then run the study, print its summary, write its report.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser

from ecosweep import IMPORTED_UNIX_S
from ecosweep.analysis.report import report_study_folders
from ecosweep.cells import plan_cells, run_options
from ecosweep.config.compose import compose_config
from ecosweep.config.paths import CONF_DIR
from ecosweep.config.schema import register_configs
from ecosweep.config.suggest import command_line_problems
from ecosweep.config.sweep import excluded_by_sweep, name_unnamed_studies
from ecosweep.errors import ConfigError, EcosweepError
from ecosweep.lanes import group_lanes
from ecosweep.plan import Plan, build_plan, store_for
from ecosweep.results.folders import writable_folder_problem
from ecosweep.results.lock import study_locks
from ecosweep.run.orchestrate import StudyRun, print_summary, run_study, write_driver_timing
from ecosweep.run.preflight import check_before_running, check_output_roots_writable

EXIT_FAILED_CELLS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# Set by Ray in the entry-point process of `ray job submit`, which runs in a temporary copy.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def fail(exc: BaseException, prog: str = "ecosweep") -> None:
    """End the command with exit status 2 and the error's message (no traceback)."""
    print(f"{prog}: {exc}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def execute(configs: List[Any], overrides: Sequence[str] = (), wait: bool = False) -> int:
    """Plan, run and summarise ``configs`` (composed from the command-line ``overrides``); ``wait``: wait for
    another command writing the same study folders instead of refusing. Returns the exit status (1 when a cell
    failed)."""
    marks = {"process_start": process_start_unix_s()}
    try:
        configs, left_out = excluded_by_sweep(name_unnamed_studies(configs, overrides))
        if left_out:
            print(f"Left out {sum(left_out.values())} grid combination(s) that sweep.exclude names: "
                  + "; ".join(f"{rule} ({n})" for rule, n in left_out.items()) + ".")
        cells = plan_cells(configs)
        if run_options(cells).dry_run:
            print_plan(build_plan(cells))
            return 0
        check_output_roots(cells)
        check_output_roots_writable(cells)
        with study_locks([store_for(c).root for c in cells], wait=wait):
            plan = build_plan(cells)  # under the locks: no other command changes these folders now
            marks["planned"] = time.time()
            check_before_running(cells, len(plan.to_measure))
            run = run_study(plan, marks=marks)
            if run.interrupted:
                _say_interrupted(run)
                return EXIT_INTERRUPTED
            print_summary(run)
            _after_study(run)
            run.marks["report_done"] = time.time()
    except EcosweepError as exc:
        fail(exc)
    try:
        write_driver_timing(run)
    except OSError as exc:  # bookkeeping only: the results are already stored
        print(f"WARNING: the driver timing could not be written: {exc}", file=sys.stderr)
    return EXIT_FAILED_CELLS if run.failed else 0


def _say_interrupted(run: StudyRun) -> None:
    done = sum(o.status == "ok" for o in run.outcomes.values())
    measured = len(run.cells) - len(run.skipped) - len(run.reused)
    print(f"Interrupted after {len(run.outcomes)} of {measured} cell(s) ({done} ok, stored under "
          f"{store_for(run.cells[0]).root.parent}); run the same command to resume.", file=sys.stderr)


# Seconds from an interpreter's start to its first import of ecosweep, beyond which the process was not started
# for this command: an interpreter is there in well under a second.
EXEC_GAP_S = 5.0


def process_start_unix_s() -> float:
    """When this command's interpreter started (unix seconds), so the timing includes interpreter and imports: the
    process's creation time, unless that lies over ``EXEC_GAP_S`` before ecosweep was first imported. Then the
    interpreter replaced an older program in the same process (``bash -c "pip install ... && python -m ecosweep"``
    execs its last command, so the creation time is the shell's, minutes earlier) and the first import of ecosweep
    stands for the start."""
    try:
        import psutil

        created = psutil.Process().create_time()
    except Exception:  # no psutil or no permission: count from ecosweep's import
        return IMPORTED_UNIX_S
    return created if IMPORTED_UNIX_S - created <= EXEC_GAP_S else IMPORTED_UNIX_S


def check_output_roots(cells: List[Any]) -> None:
    """Under `ray job submit` a relative output_root would land in Ray's temporary copy."""
    if not os.environ.get(RAY_JOB_ENV):
        return
    relative = sorted({c.settings.output_root for c in cells
                       if not os.path.isabs(os.path.expanduser(c.settings.output_root))})
    if relative:
        raise ConfigError(
            f"output_root={relative[0]!r} is relative, and this command runs under `ray job submit` in a "
            f"temporary copy of the working directory ({os.getcwd()}), which Ray deletes; give an absolute "
            "path, e.g. output_root=/shared/ecosweep or ECOSWEEP_OUTPUT_ROOT=/shared/ecosweep."
        )


def print_plan(plan: Plan) -> None:
    """The cells a command would run, with their ids and whether results exist already
    (done: in this study; reuse:<study>: another study under the output root measured it; todo:<study>:
    it did, but its ray.one_gpu_per lane is measured whole), and the lanes of the cells to measure."""
    for entry in plan.entries:
        c, s = entry.cell, entry.cell.settings
        print(f"{c.id}  {entry.label()}  {s.study}  {c.label}  hardware={s.hardware.name} weights={s.weights} "
              f"repetitions={s.repetitions}")
    cells = plan.cells
    modes = sorted({c.settings.ray.one_gpu_per for c in cells} - {"cell"})
    if modes:
        lanes = [lane for lane in group_lanes(cells, cluster_gpus=1.0) if lane.gpus > 0]  # as where GPUs exist
        if lanes:
            sizes = ", ".join(f"{len(lane.cells)} on {lane.gpus:g} GPU{'s' if lane.gpus > 1 else ''}" for lane in lanes)
            print(f"ray.one_gpu_per={','.join(modes)}: on GPUs these cells run in {len(lanes)} lane(s), each on its "
                  f"own GPUs with its cells in turn (cells per lane: {sizes}).")
        else:
            print(f"ray.one_gpu_per={','.join(modes)}: CPU cells reserve no GPU and run on their own; lanes still "
                  "decide which cells are reused.")
    print(f"{len(cells)} cell(s); dry run: nothing was run.")


def _after_study(run: StudyRun) -> None:
    """The end-of-study report, then the study's MLflow parent run with it (neither fails the study:
    the data is already safe)."""
    try:
        report_study_folders(sorted({store_for(c).root for c in run.cells}), run.plan.options.report)
    except Exception as exc:  # report problems must not hide measured results
        print(f"WARNING: the report could not be written: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if run.tracker is not None:
            run.tracker.finish(run)


def launch_sweep(launcher: Any, job_overrides: Sequence[Sequence[str]], wait: bool = False) -> List[Any]:
    """The ecosweep Hydra launcher: compose every job, then run them all as one study."""
    from hydra.core.utils import JobReturn, JobStatus

    loader = launcher.hydra_context.config_loader
    configs = [loader.load_sweep_config(launcher.config, list(o)) for o in job_overrides]
    try:
        status = execute(configs, list(launcher.config.hydra.overrides.task), wait=wait)
    except SystemExit as exc:
        if exc.code == EXIT_BAD_INPUT:
            _undo_sweep_dir(Path(launcher.config.hydra.sweep.dir))
        raise
    if status:
        sys.exit(status)
    returns = []
    for overrides, cfg in zip(job_overrides, configs):
        ret = JobReturn(overrides=list(overrides), cfg=cfg, hydra_cfg=None, working_dir=None,
                        task_name="ecosweep", status=JobStatus.COMPLETED)
        ret.return_value = 0
        returns.append(ret)
    return returns


def _undo_sweep_dir(sweep_dir: Path) -> None:
    """Bad input writes nothing: remove the multirun.yaml Hydra saved before the launcher ran, and the
    folders that held only it (the output root too, when this command created nothing else there)."""
    try:
        (sweep_dir / "multirun.yaml").unlink(missing_ok=True)
        for folder in (sweep_dir, sweep_dir.parent):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    except OSError:  # tidying only
        pass


def _is_multirun(flags: Sequence[str], overrides: Sequence[str]) -> bool:
    """Whether the command may be a sweep: ``-m``, or an experiment (which may set ``hydra.mode: MULTIRUN``)."""
    return bool({"-m", "--multirun"} & set(flags)) or any(a.lstrip("+").startswith("experiment=") for a in overrides)


def _sweep_preflight(argv: List[str]) -> List[str]:
    """A sweep's checks before Hydra's sweeper writes ``<output_root>/_hydra/multirun.yaml`` (it does so before the
    launcher, and so before ecosweep, sees anything): an output root that cannot be written ends the command here,
    as it ends a single run (exit 2, one message, nothing written), and a dry run's Hydra folder goes to a
    temporary folder, removed at exit. Returns the arguments to give Hydra."""
    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-")]
    if not _is_multirun(flags, overrides):
        return argv
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        first = [o.input_line if not o.is_sweep_override() else
                 f"{o.input_line.split('=', 1)[0]}={next(iter(o.sweep_string_iterator()))}" for o in parsed]
        roots = {o.key_or_group: list(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()}.get(
            "output_root")
        cfg = compose_config([f for f in first if not f.startswith("hydra")], return_hydra_config=True)
    except Exception:  # whatever Hydra cannot compose, Hydra reports as it does for single runs
        return argv
    if not ({"-m", "--multirun"} & set(flags) or str(cfg.hydra.mode) == "RunMode.MULTIRUN"):
        return argv
    if cfg.dry_run:  # a dry run writes nothing: Hydra's own folder goes where nothing is kept
        scratch = tempfile.mkdtemp(prefix="ecosweep-dry-run-")
        atexit.register(shutil.rmtree, scratch, True)
        return [*argv, f"hydra.sweep.dir={scratch}"]
    problems = [p for p in (writable_folder_problem(Path(root), "output_root") for root in (roots or [cfg.output_root]))
                if p]
    if problems:
        fail(ConfigError(problems))
    return argv


def _hydra_entry(argv: List[str], wait: bool) -> None:
    """Hand ``argv`` to Hydra (its entry point reads ``sys.argv``) with a task that executes the composed cell;
    a sweep reaches :func:`launch_sweep` through the launcher, told of ``wait`` by its own setting."""
    import hydra

    register_configs()
    if wait:
        argv = [*argv, "hydra.launcher.wait=true"]
    sys.argv = [sys.argv[0], *argv]

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def task(cfg: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        status = execute([cfg], list(HydraConfig.get().overrides.task), wait=wait)
        if status:
            sys.exit(status)

    task()


def main(argv: List[str]) -> int:
    """The study command: ``argv`` are its options (``--wait``, Hydra's ``-m`` ...) and overrides."""
    wait = "--wait" in argv
    argv = [a for a in argv if a != "--wait"]
    problems = command_line_problems(argv)
    if problems:
        print("ecosweep: " + "\n".join(problems) + "\nNothing was run and no results were written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        _hydra_entry(_sweep_preflight(argv), wait)
    except KeyboardInterrupt:  # before or after the cells (inside, run_study stops cleanly)
        print("Interrupted; results stored so far are complete. Run the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0

