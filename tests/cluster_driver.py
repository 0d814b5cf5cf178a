"""A driver process for the cluster tests: trains tiny runs through ``ensure_runs`` on the
Ray backend and prints their outcomes as JSON; an ``InfrastructureError`` is printed as
``nrnn`` prints it, with its exit code.

    python cluster_driver.py '{"address": ..., "store": ..., "seeds": [0, 1], ...}'
"""

from __future__ import annotations

import json
import sys


def main(arguments: dict) -> int:
    from nrnn.backends import RayBackend
    from nrnn.exitcodes import InfrastructureError
    from nrnn.figures import runs
    from nrnn.harness import EvaluationTask, ensure_runs
    from nrnn.store import RunStore

    size = runs.Size(
        hidden_dim=arguments.get("hidden", 8),
        epochs=arguments.get("epochs", 2),
        seeds=tuple(arguments.get("seeds", (0,))),
        train_subset=arguments.get("train_subset", 128),
        eval_subset=64,
        device=arguments.get("device", "cpu"),
    )
    specs = runs.grid(["digits-rows"], ("lipschitz",), size)
    backend = RayBackend(
        jobs=arguments.get("jobs"),
        address=arguments.get("address"),
        gpus_per_run=arguments.get("gpus_per_run"),
        max_retries=arguments.get("max_retries", 3),
    )
    try:
        outcomes = ensure_runs(
            specs,
            RunStore(arguments["store"]),
            backend,
            task=EvaluationTask(subset=64),
            threads_per_run=arguments.get("threads", 1),
            progress=False,
        )
    except InfrastructureError as error:
        print(f"nrnn: {error}", file=sys.stderr)
        return error.exit_code
    print(
        json.dumps(
            [
                {
                    "status": o.status,
                    "run_dir": str(o.run_dir),
                    "result": o.result,
                    "placement": o.placement,
                }
                for o in outcomes
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
