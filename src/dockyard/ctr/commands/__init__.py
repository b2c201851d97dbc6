"""One module per dockyard-ctr command. Each has `configure(parser)`, which adds its verbs
(`verbs(parser)` below) and sets `run=function(session, args) -> exit status` on each."""

import argparse


def verbs(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)


def verb(sub: argparse._SubParsersAction, name: str, run, help_text: str, aliases=()) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, aliases=list(aliases), help=help_text, description=help_text)
    parser.set_defaults(run=run)
    return parser
