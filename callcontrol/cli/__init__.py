"""``callcontrol``: the command line. Each command loads config, does one chore, exits.

Bad input ends in one line on stderr and a non-zero exit, never a traceback. One module per
command group; each imports at the top only what its options need (typer and the standard
library), and the rest inside its commands. The groups themselves are imported only when
one of their commands runs or shows its help: ``callcontrol --help`` lists them from
:data:`GROUPS`, so it starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

import typer
from typer.core import TyperGroup

from callcontrol.cli import explain, provision, service

if TYPE_CHECKING:
    from typer import _click as click  # the click that typer ships


class Group(NamedTuple):
    """A command group: the module holding its Typer ``app``, and its help line."""

    module: str
    help: str


GROUPS: dict[str, Group] = {
    "db": Group("callcontrol.cli.db", "The shared database."),
    "bench": Group("callcontrol.cli.bench", "Benchmarks: ratios measured side by side in one run."),
    "simulate": Group(
        "callcontrol.cli.simulator",
        "The simulated Asterisk: ARI for tests and demos, and simulated calls.",
    ),
    "asterisk": Group(
        "callcontrol.cli.asterisk",
        "Asterisk: configuration rendered from the database, and a sandbox to run it.",
    ),
    "locutions": Group(
        "callcontrol.cli.locutions",
        "Voice notifications: the audio of every reason, per language, and its installation.",
    ),
    "cdr": Group("callcontrol.cli.cdr", "CDRs (billable calls): list and export."),
    "recordings": Group(
        "callcontrol.cli.recordings", "Recorded call segments: list, export, remove."
    ),
    "console": Group(
        "callcontrol.cli.console",
        "The operator console: live calls and actions on them, client counters.",
    ),
    "admin": Group("callcontrol.cli.admin", "Administrators of the HTTP API."),
    "api": Group("callcontrol.cli.api", "The HTTP API: roles, permissions, audit."),
    "platform": Group(
        "callcontrol.cli.platform",
        "The platform on loopback: Kamailio, rtpengine, N Asterisk servers; drain a server.",
    ),
}
"""The command groups, in the order ``--help`` lists them (after the commands)."""


class CommandLine(TyperGroup):
    """The root: its own commands built at once, each group built when it is used. While the
    root's help is written, a group is a stand-in bearing its name and help line only."""

    listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [
            *super().list_commands(ctx),
            *(name for name in GROUPS if name not in self.commands),
        ]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in GROUPS:
            return found
        group = GROUPS[cmd_name]
        if self.listing:
            return TyperGroup(name=cmd_name, help=group.help)
        built = typer.main.get_group(importlib.import_module(group.module).app)
        built.name = cmd_name
        self.commands[cmd_name] = built
        return built

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and args[0] not in GROUPS:
            # An unknown command fails; its "did you mean" is drawn from every name.
            for name, group in GROUPS.items():
                self.commands.setdefault(name, TyperGroup(name=name, help=group.help))
        return super().resolve_command(ctx, args)

    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


app = typer.Typer(
    cls=CommandLine,
    help="Call control for multi-tenant Asterisk application servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("provision")(provision.provision)
app.command("explain")(explain.explain_command)
app.command("run")(service.run_service)
app.command("demo")(provision.demo)


def main() -> None:
    app()
