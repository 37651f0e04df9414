"""``callcontrol``: the command line. Each command loads config, does one chore, exits.

Bad input ends in one line on stderr and a non-zero exit, never a traceback. One module per
command group; each imports at the top only what its options need (typer and the standard
library), and the rest inside its commands, so ``callcontrol --help`` starts fast.
"""

from __future__ import annotations

import typer

from callcontrol.cli import (
    asterisk,
    bench,
    cdr,
    console,
    db,
    explain,
    locutions,
    provision,
    recordings,
    service,
    simulator,
)

app = typer.Typer(
    help="Call control for multi-tenant Asterisk application servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("provision")(provision.provision)
app.command("explain")(explain.explain_command)
app.command("run")(service.run_service)
app.command("demo")(provision.demo)
app.add_typer(db.app, name="db")
app.add_typer(bench.app, name="bench")
app.add_typer(simulator.app, name="simulate")
app.add_typer(asterisk.app, name="asterisk")
app.add_typer(locutions.app, name="locutions")
app.add_typer(cdr.app, name="cdr")
app.add_typer(recordings.app, name="recordings")
app.add_typer(console.app, name="console")


def main() -> None:
    app()
