r"""Sweeps: loss × architecture × dataset × seed on a laptop or a CPU cluster, with Dask.

.. code-block:: python

    from ntkgan.sweep import Grid, sweep

    grid = Grid(loss="inf_ipm,inf_lsgan,ipm_reset", arch="relu,relu_nobias,rbf",
                data="eight_gaussians,density,ab", seeds=3)
    result = sweep(grid, "sweeps/paper", steps=1000, workers=2)   # or scheduler="tcp://host:8786"

or ``ntkgan sweep --loss ... --arch ... --data ... --seeds 3 --steps 1000 --out sweeps/paper``.
Each run is :func:`ntkgan.runner.run` of ``make_config(loss, arch, data, seed=s, steps=N, **overrides)``
in ``DIR/runs/<loss>-<arch>-<data>-seed<S>``, one Dask task on a single-threaded worker; its
``result.json`` is written as soon as it finishes, so a sweep can be interrupted and run again (finished
runs are skipped, partial ones resumed).  The sweep writes ``results.csv``, ``results.md`` (the paper's
table layout), ``results.png`` and ``sweep.json`` (wall time, workers).  See ``docs/sweeps.md``.

Modules: ``_grid`` (the grid and its expansion), ``_task`` (one run, as a task), ``_records`` (result
files), ``_execute`` (serial or Dask execution, progress), ``_table`` and ``_plot`` (the outputs),
``_api`` (:func:`sweep`), ``_cli`` (``ntkgan sweep``).  ``dask.distributed`` (``pip install
"ntkgan[dask]"``) is imported only when a cluster is used.
"""

from ntkgan.sweep._api import DEFAULT_CHECKPOINTS, DEFAULT_RETRIES, SweepResult, sweep
from ntkgan.sweep._grid import Grid, Setting, Skipped

__all__ = ["DEFAULT_CHECKPOINTS", "DEFAULT_RETRIES", "Grid", "Setting", "Skipped", "SweepResult", "sweep"]
