"""How the command line reports expected failures: one "Error:" line and a non-zero exit, never a trace."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps

import click
from sqlalchemy.exc import OperationalError

from workflows.errors import DomainError, NotFound


def friendly_errors(writing: str | None = None) -> Callable:
    """Decorate a command so domain, database and (when it `writing` a file) I/O errors read as one line."""
    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except NotFound as exc:
                hint = f" Did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else ""
                raise click.ClickException(f"{exc}{hint}") from None
            except DomainError as exc:
                raise click.ClickException(str(exc)) from None
            except OperationalError as exc:
                first = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
                raise click.ClickException(f"cannot reach the database: {first}") from None
            except BrokenPipeError:
                # The reader went away (`| head`): stop quietly, as other command-line tools do.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)
            except OSError as exc:
                if writing is None:
                    raise
                where = f": {exc.filename}" if exc.filename else ""
                raise click.ClickException(f"cannot write {writing}: {exc.strerror or exc}{where}") from None
        return wrapper
    return decorate
