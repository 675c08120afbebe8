"""One way every command ends on bad user data: a readable line and exit code 2."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from datasets import CityDataError, CityDataWarning

EXIT_BAD_DATA = 2
Result = TypeVar("Result")
error_console = Console(stderr=True)


def guarded(job: Callable[[], Result], also: tuple[type[Exception], ...] = ()) -> Result:
    """Run ``job``: data repairs become warning lines, bad data one error line and exit 2.

    Args:
        job: The work to run.
        also: Further exception types that mean bad user input (e.g. ``ValueError``
            from an option out of range).

    Lines are not wrapped and markup is escaped, so a long path or a ``[`` in a
    rule stays on one readable line, and no traceback reaches the user.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CityDataWarning)
            result = job()
    except (CityDataError, *also) as error:
        error_console.print(f"[red]error[/red]: {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(EXIT_BAD_DATA) from None
    for warning in caught:
        if issubclass(warning.category, CityDataWarning):
            error_console.print(
                f"[yellow]warning[/yellow]: {escape(str(warning.message))}", soft_wrap=True
            )
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return result
