"""Wall time of `xadbench --help`, `xadbench methods list` and `xadbench run --help` against
`python -c "import torch"`, each a fresh interpreter, best of 5, measured in the same run. Prints
the CPU model and the load average, since the numbers only mean something on an idle machine."""
import os
import subprocess
import sys
import time

from xadbench.provenance import cpu_model

REPEATS = 5
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "xadbench --help": [sys.executable, "-c", "from xadbench.cli import main; main()", "--help"],
    "xadbench methods list": [sys.executable, "-c", "from xadbench.cli import main; main()", "methods", "list"],
    "xadbench run --help": [sys.executable, "-c", "from xadbench.cli import main; main()", "run", "--help"],
}


def wall(command: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    print(f"cpu: {cpu_model()} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.2f}")
    seconds = {name: wall(command) for name, command in COMMANDS.items()}
    for name, value in seconds.items():
        print(f"{name:<24} {value:6.3f} s  = {value / seconds['import torch']:.2f} x import torch")
    help_s = next(value for name, value in seconds.items() if "help" in name)
    print(f"RATIO cli_help_vs_import_torch {help_s:.3f} s {seconds['import torch']:.3f} s "
          f"{help_s / seconds['import torch']:.2f}")


if __name__ == "__main__":
    main()
