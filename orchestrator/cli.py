"""The `augworth` command line (typer): every command, registered here in one place, from one module per group
of verbs (`cli_sweeps.py`: run, submit, resume, demo, presets; `cli_results.py`: query, analyze, status, verify,
compact, evaluate; `cli_report.py`: report; `cli_search.py`: best). A command module imports only what lies
below the command line (`cli_common.py`, `answers.py`, `cli_questions.py` and the packages), never another
command module. Heavy imports (Ray, torch, analysis) happen inside the commands that need them: `augworth query`
starts neither Ray nor torch.

Exit codes: 0 ok, 2 bad input, 3 the sweep finished with failed cells (or some did not finish), 4 the local Ray
stopped under the driver (`augworth resume SWEEP` goes on; supervise.py), 1 a bug of ours.
"""

from __future__ import annotations

import sys
import warnings

from . import cli_report, cli_results, cli_search, cli_sweeps
from .cli_common import app, err

COMMANDS = (
    cli_sweeps.run, cli_sweeps.submit, cli_sweeps.resume, cli_sweeps.demo, cli_sweeps.presets,
    cli_results.query, cli_results.analyze, cli_results.status, cli_results.verify, cli_results.compact,
    cli_results.evaluate, cli_report.report, cli_search.best,
)
for command in COMMANDS:
    app.command()(command)

SUPERVISED = ("run", "resume", "demo")  # the commands that may start a private local Ray (supervise.py)


def main() -> None:
    # A skipped store file is worth one line on stderr, not Python's warning format.
    warnings.showwarning = lambda message, *args, **kwargs: err.print(
        f"[yellow]augworth: warning:[/] {message}", highlight=False, soft_wrap=True)
    from . import startup, supervise

    if sys.argv[1:2] and sys.argv[1] in SUPERVISED and "--dry-run" not in sys.argv and supervise.supported():
        supervise.become_supervised()  # the parent exits in there; the child (the driver) goes on below
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if code is not None and not isinstance(code, int):  # sys.exit("message"): Python prints it, exit 1
        print(code, file=sys.stderr)
        code = 1
    startup.fast_exit(code or 0)


if __name__ == "__main__":
    main()
