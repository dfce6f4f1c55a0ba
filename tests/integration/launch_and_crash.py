"""Launch one run through a Supervisor, print its Started as JSON, then die like ``kill -9``.

Used by test_executor.py to leave a run behind for a fresh Supervisor to adopt.

    python launch_and_crash.py WORKDIR RUN_ID SHELL_SCRIPT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from corral import executor


def main() -> None:
    workdir, run_id, script = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    supervisor = executor.Supervisor(lambda outcome: None, handover_dir=workdir / "spawners")
    supervisor.start()
    result = supervisor.launch(
        executor.Launch(
            run_id=run_id,
            argv=("/bin/sh", "-c", script),
            env={"PATH": os.environ.get("PATH", os.defpath), "CORRAL_RUN_ID": str(run_id)},
            cwd=None,
            log_path=workdir / f"{run_id}.log",
            exit_path=workdir / f"{run_id}.exit",
        )
    )
    if isinstance(result, executor.Outcome):
        print(json.dumps({"error": result.error}), flush=True)
        os._exit(1)
    print(
        json.dumps(
            {
                "run_id": result.run_id,
                "pid": result.pid,
                "pgid": result.pgid,
                "start_time": result.start_time,
                "exit_path": str(workdir / f"{run_id}.exit"),
                "log_path": str(workdir / f"{run_id}.log"),
            }
        ),
        flush=True,
    )
    # No close(), no atexit, no finally: the supervisor vanishes mid-run.
    os._exit(0)


if __name__ == "__main__":
    main()
