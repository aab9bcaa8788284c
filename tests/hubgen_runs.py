"""Several `hubgen` command lines in one process (or one pair of processes under `accelerate launch
--multi_gpu --num_processes 2`), so that the imports, most of a short run's time on a small CPU, are paid once.
Used by tests/test_precision.py. Each argument is one command line (shell-quoted); one line per command is
printed to stdout: `EXIT <code> <command>`.

Between commands accelerate's state (a per-process singleton, fixed by the first run's --mixed_precision) is
reset, as a new process would start. Launched in two processes, each command starts its own process group on
its own rendezvous port (HUBGEN_TEST_PORTS: one free port per command, the same on both ranks), served by rank 0
rather than the launcher's store: re-joining the launcher's store after a group was destroyed let rank 0 read
rank 1's stale address from the previous group."""

import os
import shlex
import sys

from accelerate.state import AcceleratorState, GradientState

from hubgen.cli import main


def run_all(commands: list[str]) -> None:
    ports = os.environ.get("HUBGEN_TEST_PORTS", "").split(",") if "HUBGEN_TEST_PORTS" in os.environ else None
    if ports is not None:
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"
    for i, command in enumerate(commands):
        if ports is not None:
            os.environ["MASTER_PORT"] = ports[i]
        code = main(shlex.split(command))
        print(f"EXIT {code} {command}", flush=True)
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import conftest  # noqa: F401  (the test environment: offline, and the plugin family installed)

    run_all(sys.argv[1:])
