"""MLflow: an experiment per study, a parent run per study, a nested run per cell.

Runs are keyed by tags so that logging is idempotent: the parent carries
``ecosweep.role=study``, each child ``ecosweep.cell_id`` and ``ecosweep.results_run_id``
(the ``run_id`` column of the Parquet rows it mirrors). Logging a cell whose child
already mirrors the same results does nothing; a re-measured cell replaces its child.
The backfill command (``python -m ecosweep mlflow-backfill``) uses the same code.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, TextIO

from ecosweep.config.schema import TrackingConfig
from ecosweep.results.schema import FIDELITY_COLUMNS, INT8_DECOMPOSITION_COLUMNS, PROFILE_COLUMNS
from ecosweep.results.store import StudyStore, read_results
from ecosweep.results.timing import PHASE_NAMES, has_breakdown
from ecosweep.stats import summarize
from ecosweep.tracking import study_summary

# Per-repetition metrics logged as steps, and summarised per cell.
STEP_METRICS = [
    "energy_j", "energy_j_per_1k_tok", "energy_j_per_request", "net_energy_j_per_1k_tok", "power_w_mean",
    "power_w_peak", "tok_s", "seconds", "latency_s_per_request", "prefill_s", "decode_s",
    "idle_power_w", "static_energy_share", "counter_vs_sampled_pct", "gpu_util_pct_mean",
    "temperature_c_max", "cpu_steal_pct",
]
SUMMARY_METRICS = ["energy_j_per_1k_tok", "energy_j_per_request", "tok_s", "power_w_mean",
                   "latency_s_per_request", "net_energy_j_per_1k_tok"]
PARAM_COLUMNS = ["cell_id", "model", "model_type", "params_count", "params_b_nominal", "weights", "quantization",
                 "engine", "engine_effective", "attn_implementation", "quant_method", "dtype", "bnb_4bit_quant_type",
                 "bnb_4bit_compute_dtype", "llm_int8_threshold", "batch_size", "input_tokens", "output_tokens",
                 "device", "device_name", "min_window_s", "fidelity_reference", "torchao_type", "quant_kernel_path",
                 "quant_fallback", "gpu_count", "weights_source"]
# One value per cell (computed once, before its windows): logged as plain metrics (the reference is a param).
CELL_METRICS = ([c for c in FIDELITY_COLUMNS if c != "fidelity_reference"] + INT8_DECOMPOSITION_COLUMNS
                + [c for c in PROFILE_COLUMNS if c not in ("profile_unknown_kernels", "profile_trace_file")])
# Per-repetition series are logged under this prefix with step = repetition; the bare metric name is the
# cell's mean, so the runs table's obvious column is the right number.
REPETITION_PREFIX = "rep."
# The MLflow 3 UI opens experiments of this kind in the classic runs view (not the GenAI overview).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
ENV_COLUMNS = ["host", "cpu_count", "device", "device_name", "gpu_uuid", "compute_capability", "gpu_memory_total_mib",
               "driver_version", "cuda_version", "python_version", "torch_version", "transformers_version",
               "bitsandbytes_version", "ecosweep_version"]


def default_uri(output_root: str) -> str:
    return "sqlite:///" + str(Path(output_root).expanduser().resolve() / "mlflow.db")


def tracking_uri(tracking: TrackingConfig, output_root: str) -> str:
    """Where MLflow runs go: ``tracking.uri``, else a sqlite store under the output root."""
    return tracking.uri or default_uri(output_root)


def backfill_hint(study_dir: Path, uri: str) -> str:
    return f"python -m ecosweep mlflow-backfill {study_dir} --uri {uri}"


def _reachable(uri: str, timeout_s: float = 3.0) -> Optional[str]:
    """None when an http(s) tracking server answers /health, else the reason it does not."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


@contextmanager
def _store_creation_lock(uri: str) -> Iterator[None]:
    """Serialise the creation of a local sqlite store between processes (a lock file beside it, ``filelock``)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db.parent / f".{db.name}.lock")):
        yield


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class MlflowMirror:
    """Writes results (as stored in Parquet) into MLflow. Raises on backend errors."""

    def __init__(self, uri: str, artifact_root: Optional[Path] = None):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        if uri.startswith("sqlite:///"):  # artifacts live beside the store they belong to, wherever the results are
            artifact_root = Path(uri[len("sqlite:///"):]).parent
        self.artifact_root = artifact_root
        self._experiments: Dict[str, str] = {}
        self._parents: Dict[str, str] = {}

    def experiment_id(self, study: str) -> str:
        if study not in self._experiments:
            exp = self.client.get_experiment_by_name(study)
            if exp is None:
                location = None
                if self.artifact_root is not None and not self.uri.startswith(("http://", "https://")):
                    location = (self.artifact_root / "mlartifacts" / study).as_uri()
                exp_id = self.client.create_experiment(study, artifact_location=location,
                                                       tags={"ecosweep.run.orchestrate": study, **EXPERIMENT_KIND})
            else:
                exp_id = exp.experiment_id
                if exp.tags.get("mlflow.experimentKind") is None:  # made by an older ecosweep
                    for key, value in EXPERIMENT_KIND.items():
                        self.client.set_experiment_tag(exp_id, key, value)
            self._experiments[study] = exp_id
        return self._experiments[study]

    def _search(self, exp_id: str, filter_string: str) -> List[Any]:
        return list(self.client.search_runs([exp_id], filter_string=filter_string, max_results=1000))

    def parent_run(self, study: str, start_ms: Optional[int] = None) -> str:
        """The study's parent run, created once (starting at ``start_ms``, default now) and reused by later
        runs and backfills."""
        if study not in self._parents:
            exp_id = self.experiment_id(study)
            found = self._search(exp_id, "tags.`ecosweep.role` = 'study'")
            if found:
                run_id = found[0].info.run_id
            else:
                run = self.client.create_run(exp_id, run_name=study, start_time=start_ms,
                                             tags={"ecosweep.role": "study", "ecosweep.run.orchestrate": study})
                run_id = run.info.run_id
            self._parents[study] = run_id
        return self._parents[study]

    def cell_children(self, study: str, cell_id: str) -> List[Any]:
        return self._search(self.experiment_id(study),
                            f"tags.`ecosweep.role` = 'cell' and tags.`ecosweep.cell_id` = '{cell_id}'")

    def log_cell_rows(self, rows: List[Dict[str, Any]], artifacts: List[Path], config_yaml: Optional[Path],
                      timing: Optional[Dict[str, Any]] = None, experiment: Optional[str] = None) -> bool:
        """Mirror one cell's stored rows (into ``experiment``, default the rows' study). Returns False when
        MLflow already mirrors them. ``timing`` (the cell's timings JSON) gives the run its real start and end."""
        from mlflow.entities import Param, RunTag

        first = rows[0]
        study = experiment or first["study"]
        cell_id, results_run_id = first["cell_id"], first.get("run_id") or ""
        existing = self.cell_children(study, cell_id)
        if any(r.data.tags.get("ecosweep.results_run_id") == results_run_id for r in existing):
            return False
        for old in existing:  # the cell was measured again: its old child is superseded
            self.client.delete_run(old.info.run_id)
        parent = self.parent_run(study)
        status = "ok" if all(r["status"] == "ok" for r in rows) else first["status"]
        ok_rows = [r for r in rows if r["status"] == "ok"]
        tags = {
            "mlflow.parentRunId": parent,
            "ecosweep.role": "cell",
            "ecosweep.run.orchestrate": study,
            "ecosweep.cell_id": cell_id,
            "ecosweep.results_run_id": results_run_id,
            "status": status,
            "energy_source": str(first.get("energy_source")),
            "weights": str(first.get("weights")),
            "hardware_profile": str(first.get("hardware")),
            "throttled_repetitions": str(sum(bool(r.get("throttled")) for r in ok_rows)),
            "contaminated_repetitions": str(sum(bool(r.get("contaminated")) for r in ok_rows)),
            "energy_mismatch_repetitions": str(sum(bool(r.get("energy_mismatch")) for r in ok_rows)),
        }
        if first.get("gpu_uuid"):
            tags["gpu_uuid"] = str(first["gpu_uuid"])
        if first.get("error"):
            tags["error"] = str(first["error"])[:4000]
        start_ms, end_ms = _cell_span_ms(rows, timing)
        run = self.client.create_run(self.experiment_id(study), run_name=cell_run_name(first), tags=tags,
                                     start_time=start_ms)
        rid = run.info.run_id
        params = [Param(k, str(first.get(k))) for k in PARAM_COLUMNS if _present(first.get(k))]
        if _present(first.get("device_name")):  # what ran, not the profile that was asked for
            params.append(Param("hardware", str(first["device_name"])))
        metrics = _cell_metrics(ok_rows, end_ms) + _time_metrics(timing, end_ms)
        self._log_batches(rid, metrics, params, [RunTag(k, v) for k, v in tags.items()])
        env = {k: first.get(k) for k in ENV_COLUMNS}
        self.client.log_text(rid, json.dumps(env, indent=1, default=str), "environment.json")
        for path in artifacts:
            if path.exists():
                self.client.log_artifact(rid, str(path))
        if config_yaml is not None and config_yaml.exists():
            self.client.log_artifact(rid, str(config_yaml))
        self.client.set_terminated(rid, "FINISHED" if status == "ok" else "FAILED", end_time=end_ms)
        return True

    def update_study(self, study: str, study_dir: Path, status: Optional[str],
                     run_metrics: Optional[Dict[str, float]] = None, end_ms: Optional[int] = None) -> str:
        """The parent run of ``study``: its grid and what ran (params, or tags where a re-run changed them),
        cell counts, ``run_metrics`` and headline comparisons (metrics), the report folder (artifacts), and
        its status."""
        parent = self.parent_run(study)
        rows = study_summary.study_rows(study_dir)
        _log_params_or_tags(self.client, parent, study_summary.study_facts(rows))
        report = study_summary.report_dir(study_dir)
        _log_params_or_tags(self.client, parent, study_summary.serving_choices(report))
        metrics = {**study_summary.cell_counts(rows), **(run_metrics or {}), **study_summary.headline_metrics(report),
                   **study_summary.serving_metrics(report)}
        now = int(time.time() * 1000)
        from mlflow.entities import Metric

        self._log_batches(parent, [Metric(k, float(v), now, 0) for k, v in metrics.items() if _finite(v)])
        if report is not None:
            for path in sorted(report.iterdir()):
                if path.is_file() and path.suffix in (".md", ".csv"):
                    self.client.log_artifact(parent, str(path), "report")
            if (report / "figures").is_dir():
                self.client.log_artifacts(parent, str(report / "figures"), "report/figures")
        if status is not None:
            self.client.set_terminated(parent, status, end_time=end_ms or now)
        return parent

    def _log_batches(self, run_id: str, metrics: List[Any], params: Optional[List[Any]] = None,
                     tags: Optional[List[Any]] = None) -> None:
        """Log metrics in batches MLflow accepts (at most 1000 per call), params and tags with the first."""
        params, tags = params or [], tags or []
        if not (metrics or params or tags):
            return
        for i in range(0, max(len(metrics), 1), 900):
            self.client.log_batch(run_id, metrics=metrics[i:i + 900], params=params if i == 0 else [],
                                  tags=tags if i == 0 else [])

    def runs_table_url(self, study: str, ui: str = "http://127.0.0.1:5000") -> str:
        """The runs table of the study's experiment in MLflow's classic view."""
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else ui
        return f"{base}/#/experiments/{self.experiment_id(study)}/runs"


def _present(value: Any) -> bool:
    """Absent values (None, NaN, '') stay out of MLflow instead of becoming the string 'None'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value) not in ("", "None", "nan")


def cell_run_name(row: Dict[str, Any]) -> str:
    """Short, leading with what varies inside a study, unique within it: 'nf4 bs2 graph · tiny-llama · 3b0505'."""
    engine = row.get("engine") or "eager"
    head = f"{row['quantization']} bs{row['batch_size']}" + ("" if engine == "eager" else f" {engine}")
    return f"{head} · {row['model']} · {str(row['cell_id'])[:6]}"


def _time_metrics(timing: Optional[Dict[str, Any]], end_ms: int) -> List[Any]:
    """The cell's wall-time breakdown (results.timing) as time.<phase> metrics, seconds, and the windows' share."""
    from mlflow.entities import Metric

    if not timing or not has_breakdown(timing):
        return []
    metrics = [Metric(f"time.{name}", float(timing[name]), end_ms, 0) for name in (*PHASE_NAMES, "wall_s")]
    if timing["wall_s"] > 0:
        metrics.append(Metric("time.windows_share", float(timing["windows_s"]) / float(timing["wall_s"]), end_ms, 0))
    return metrics


def _cell_metrics(ok_rows: List[Dict[str, Any]], end_ms: int) -> List[Any]:
    """Every repetition under rep.<metric> (step = repetition), and per summary metric its mean under the
    bare name with .mean .sd .cv_pct .ci95_low .ci95_high .n."""
    from mlflow.entities import Metric

    metrics = []
    for r in ok_rows:
        ts = int(r["timestamp_utc"].timestamp() * 1000) if r.get("timestamp_utc") is not None else end_ms
        metrics += [Metric(REPETITION_PREFIX + k, float(r[k]), ts, int(r["repetition"])) for k in STEP_METRICS
                    if _finite(r.get(k))]
    for k in SUMMARY_METRICS:
        s = summarize([r.get(k) for r in ok_rows if _finite(r.get(k))], bootstrap=False)
        if s.n == 0:
            continue
        for name, value in (("", s.mean), (".mean", s.mean), (".sd", s.sd), (".cv_pct", s.cv_pct),
                            (".ci95_low", s.ci95_low), (".ci95_high", s.ci95_high), (".n", float(s.n))):
            if _finite(value):
                metrics.append(Metric(f"{k}{name}", float(value), end_ms, 0))
    if ok_rows:
        metrics += [Metric(k, float(ok_rows[0][k]), end_ms, 0) for k in CELL_METRICS if _finite(ok_rows[0].get(k))]
    return metrics


def _cell_span_ms(rows: List[Dict[str, Any]], timing: Optional[Dict[str, Any]]) -> tuple:
    """When the cell's process started and finished (ms), from its timings; else from its rows."""
    if timing and timing.get("actor_started_unix_s") and timing.get("finished_unix_s"):
        return int(timing["actor_started_unix_s"] * 1000), int(timing["finished_unix_s"] * 1000)
    stamps = [r["timestamp_utc"].timestamp() for r in rows if r.get("timestamp_utc") is not None]
    now = time.time()
    start = min(stamps) if stamps else now
    end = max(r["timestamp_utc"].timestamp() + (r.get("seconds") or 0) for r in rows
              if r.get("timestamp_utc") is not None) if stamps else now
    return int(start * 1000), int(end * 1000)


def _log_params_or_tags(client: Any, run_id: str, facts: Dict[str, str]) -> None:
    """Params where they are new or unchanged; a fact a re-run changed becomes a tag (params are immutable)."""
    current = client.get_run(run_id).data.params
    from mlflow.entities import Param, RunTag

    params = [Param(k, v) for k, v in facts.items() if k not in current]
    tags = [RunTag(f"study.{k}", v) for k, v in facts.items() if k in current and current[k] != v]
    if params or tags:
        client.log_batch(run_id, params=params, tags=tags)


def _cell_rows(path: Path) -> List[Dict[str, Any]]:

    return read_results([path]).to_pylist()


def mirror_stored_cell(mirror: MlflowMirror, store: Any, cell_id: str, experiment: Optional[str] = None,
                       rows: Optional[List[Dict[str, Any]]] = None) -> bool:
    """Mirror a stored cell: its ``rows`` as they were written (None: read from ``store``) and its files."""
    rows = _cell_rows(store.cell_path(cell_id)) if rows is None else rows
    if not rows:
        return False
    artifacts = [store.cell_path(cell_id), *store.trace_files(cell_id), store.timing_path(cell_id)]
    timing = json.loads(store.timing_path(cell_id).read_text()) if store.timing_path(cell_id).exists() else None
    return mirror.log_cell_rows(rows, artifacts, store.config_path(cell_id), timing, experiment)


class MlflowTracker:
    """The study-time tracker: mirrors each cell after its Parquet file is written."""

    def __init__(self, mirror: Optional[MlflowMirror], uri: str, out: TextIO, study_dir: Path):
        self.mirror = mirror
        self.uri = uri
        self.out = out
        self.study_dir = study_dir
        self.study: Optional[str] = None

    @classmethod
    def for_study(cls, tracking: TrackingConfig, output_root: str, study: str,
                  out: TextIO = sys.stdout) -> "MlflowTracker":
        """The tracker of ``study`` under ``output_root``, its parent run RUNNING (or a warning, once)."""
        uri = tracking_uri(tracking, output_root)
        study_dir = Path(output_root).expanduser().resolve() / study
        tracker = cls(None, uri, out, study_dir)
        reason = _reachable(uri)
        if reason is None:
            try:
                root = Path(output_root).expanduser().resolve()
                root.mkdir(parents=True, exist_ok=True)
                with _store_creation_lock(uri):  # two studies creating one sqlite store at once break it
                    tracker.mirror = MlflowMirror(uri, artifact_root=root)
                    parent = tracker.mirror.parent_run(study)
                tracker.mirror.client.update_run(parent, status="RUNNING")
                tracker.study = study
            except Exception as exc:  # tracking must never stop a study
                tracker.mirror = None
                reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            tracker._warn(reason)
        return tracker

    def _warn(self, reason: str) -> None:
        print(f"WARNING: MLflow tracking at {self.uri} is unavailable ({reason.strip().splitlines()[0][:300]}). "
              f"The study goes on and its Parquet results stay complete; afterwards mirror them into MLflow "
              f"with:\n  {backfill_hint(self.study_dir, self.uri)}", file=self.out)

    def log_cell(self, cell: Any, rows: Optional[List[Dict[str, Any]]], store: Any) -> None:
        if self.mirror is None:
            return
        try:
            mirror_stored_cell(self.mirror, store, cell.id, rows=rows)
        except Exception as exc:
            self.mirror = None
            self._warn(f"{type(exc).__name__}: {exc}")

    def close(self, run: Any) -> None:
        """After the cells: an interrupted study's parent run ends KILLED now (a finished one ends in
        :meth:`finish`, once its report exists)."""
        if self.mirror is not None and self.study is not None and getattr(run, "interrupted", False):
            try:
                self.mirror.client.set_terminated(self.mirror.parent_run(self.study), "KILLED")
            except Exception as exc:  # tracking must never fail a study
                self._warn(f"{type(exc).__name__}: {exc}")

    def finish(self, run: Any) -> None:
        """After the report: the parent run gets the grid, counts, headline comparisons and the report, and
        ends FINISHED (FAILED when a cell failed)."""
        if self.mirror is None or self.study is None or getattr(run, "interrupted", False):
            return
        try:
            self.mirror.update_study(self.study, self.study_dir, "FAILED" if run.failed else "FINISHED",
                                     {"cells_measured_last_run": len(run.outcomes),
                                      "cells_reused_last_run": len(run.reused)})
            url = self.mirror.runs_table_url(self.study)
        except Exception as exc:  # tracking must never fail a study
            self._warn(f"{type(exc).__name__}: {exc}")
            return
        serve = "" if self.uri.startswith(("http://", "https://")) else \
            f"mlflow ui --backend-store-uri {self.uri}   # then open "
        print(f"MLflow: experiment '{self.study}' in {self.uri}; runs table:\n  {serve}{url}", file=self.out)


def backfill(study_dirs: List[Path], uri: Optional[str], out: TextIO = sys.stdout,
             experiment: Optional[str] = None) -> int:
    """Mirror stored cells, and the study's report, into MLflow; idempotent. Returns the number of runs
    created. ``experiment`` names the MLflow experiment (default: the study column of the rows), e.g. to
    keep experiments/int8_paradox/h100 and .../h200 apart."""

    created = 0
    for study_dir in study_dirs:
        study_dir = Path(study_dir).expanduser().resolve()
        if not (study_dir / "cells").is_dir():
            raise FileNotFoundError(f"{study_dir} is not a study folder (it has no cells/ folder)")
        root = study_dir.parent
        mirror = MlflowMirror(uri or default_uri(str(root)), artifact_root=root)
        store = StudyStore(root, study_dir.name)
        cells = sorted(p.stem for p in store.cells_dir.glob("*.parquet") if not p.name.startswith("."))
        rows = study_summary.study_rows(study_dir)
        name = experiment or (rows.study.iloc[0] if not rows.empty and rows.study.nunique() == 1 else study_dir.name)
        start_ms, end_ms = study_summary.study_span_ms(store, cells)
        mirror.parent_run(name, start_ms)  # a new parent spans the cells it holds, not the moment of backfill
        n = sum(mirror_stored_cell(mirror, store, cid, name) for cid in cells)
        failed = study_summary.cell_counts(rows).get("cells_failed", 0)
        mirror.update_study(name, study_dir, "FAILED" if failed else "FINISHED", end_ms=end_ms)
        created += n
        print(f"{study_dir.name}: {n} run(s) created, {len(cells) - n} already in MLflow ({mirror.uri}, experiment "
              f"'{name}'); runs table: {mirror.runs_table_url(name)}", file=out)
    return created
