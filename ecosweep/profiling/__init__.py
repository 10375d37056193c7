"""Where a generated token's time goes: one call of a cell's workload traced with the PyTorch profiler.

:mod:`~ecosweep.profiling.rules` sorts kernels into classes, :mod:`~ecosweep.profiling.trace` reads the profiler's
events and links kernels to the operators and scopes that launched them, :mod:`~ecosweep.profiling.summary` turns
them into a token's breakdown (the ``profile_*`` columns), :mod:`~ecosweep.profiling.call` traces the call.

With ``profile=true`` a cell makes one extra call after its energy windows are closed (never inside them:
the profiler's own overhead is not billed to any measurement) and records, per generated token:

- how long the GPU was busy (the union of its kernels' intervals) against the call's wall time: the idle
  share is the launch-bound share, measured instead of inferred from static power;
- kernels and host-side kernel launches (``cudaLaunchKernel``, ``cudaGraphLaunch``, ...) per token;
- GPU time by kernel class (``KERNEL_CLASSES``), classified by one ordered rule table (``RULES``) on the
  kernel's name, the op that launched it and the ops and module scopes around that op. A kernel no rule
  knows is counted as ``unknown`` and named in ``profile_unknown_kernels``, never dropped.

The trace (Chrome JSON, gzip) is kept beside the cell's power trace, ``traces/<cell_id>.profile.json.gz``,
openable in Perfetto or chrome://tracing. On a CPU there are no kernels: the operators (``aten::``,
``bitsandbytes::``, ..., each with its self time) stand in for them and there is no busy or idle share.

Under the eager engine, attention and normalisation modules and bitsandbytes' linear layers are wrapped in
profiler scopes (``ecosweep::module::<class>``) for the call, so their non-GEMM kernels can be attributed;
graph and compiled engines replay or fuse their modules, and their kernels are classified by name alone.
"""
