"""The ``zoo`` command: list, info, predict, train, eval, release, reproduce, push, card; export and bench come from
zoo.export through the ``zoo.commands`` entry points (zoo never imports export).

Exit status: 0 done; 1 the system failed (a file that cannot be read or written, a full disk);
2 a refused input or a failed check; 130 stopped by Ctrl-C (SIGINT) or SIGTERM, a training run's state
saved. Each error is one line on stderr; --debug (or ZOO_DEBUG=1) shows the traceback.

This front stays light: ``zoo --help`` and ``zoo --version`` answer without loading torch; the
subcommands' arguments and work (zoo.commands) load once a subcommand is given.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from zoo.cli.cliutil import COMMANDS, EXAMPLES, HelpFormatter, epilog
from zoo.core.console import EXIT_CODES, EXIT_STOPPED, run_command
from zoo.core.version import __version__

__all__ = ["DESCRIPTION", "PLUGIN_GROUP", "build_parser", "main", "plugin_parser", "plugins"]

DESCRIPTION = """VGG, ResNet and GoogLeNet of "Deeper Networks for Image Classification": the models and their
ablations, pretrained weights, training with the paper's recipes, its experiments, ONNX export and the CPU
benchmark. Each command has its own options and examples: zoo COMMAND --help."""
"""``zoo --help``'s text above the commands (plain text: a terminal shows it as it is)."""

PLUGIN_GROUP = "zoo.commands"
"""Entry points adding subcommands: each loads ``build_parser(parser)`` of a package built on zoo (export's)."""


def plugins() -> dict:
    """The subcommands other packages add (``zoo export``, ``zoo bench``), by name; none is imported yet."""
    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


def build_parser(add_commands: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    """The ``zoo`` parser: with ``add_commands`` (zoo.cli.commands'), the subcommands' own arguments; without, only their
    names and help, enough for ``--help`` and ``--version``."""
    parser = argparse.ArgumentParser(prog="zoo", description=DESCRIPTION, epilog=epilog(EXAMPLES["zoo"]),
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    if add_commands is not None:
        add_commands(sub)
    else:
        for name, text in COMMANDS.items():
            sub.add_parser(name, help=text, add_help=False)
    for name, ep in plugins().items():
        sub.add_parser(name, help=f"from {ep.value.split(':')[0]}: see zoo {name} --help", add_help=False)
    return parser


def plugin_parser(name: str) -> argparse.ArgumentParser:
    """``zoo NAME``'s parser for a plugin command: zoo's layout and exit codes, the plugin's arguments, description
    and examples (its ``build_parser(parser)``, loaded here)."""
    parser = argparse.ArgumentParser(prog=f"zoo {name}", formatter_class=HelpFormatter, epilog=EXIT_CODES)
    return plugins()[name].load()(parser)


def main(argv: list[str] | None = None) -> int:
    """Run ``zoo ARGV``; Ctrl-C at any moment, loading included, is one line and exit status 130."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        print("zoo: stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_STOPPED


def _main(argv: list[str]) -> int:
    found = plugins()
    if argv[:1] == ["--debug"] and argv[1:2] and argv[1] in found:
        os.environ["ZOO_DEBUG"] = "1"
        argv = argv[1:]
    if argv and argv[0] in found:  # a plugin's own parser, loaded only when its command runs
        return run_command(plugin_parser(argv[0]), argv[1:])
    if not any(a in COMMANDS for a in argv):  # --help, --version, or no command: answered without the library
        return run_command(build_parser(), argv)
    commands = importlib.import_module("zoo.cli.commands")  # the library, torch included: only once a command runs
    return run_command(build_parser(commands.add_commands), argv)

