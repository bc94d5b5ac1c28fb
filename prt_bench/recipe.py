"""One config dataclass per training recipe, from which the rest is derived: the recipe's
keyword arguments, the ``train:`` keys a suite may set, the options of ``prt-bench train ...``
and the hyperparameters its manifest records.

A field's ``metadata`` may hold ``help`` (the CLI's help text) and ``flag`` (the CLI's
declaration, e.g. ``"--chat-template/--plain"``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable


class RecipeConfig:
    """Mix-in for the recipes' frozen dataclasses."""

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_options(cls, options: dict[str, Any], where: str = "training option"):
        unknown = sorted(set(options) - cls.keys())
        if unknown:
            raise TypeError(f"unknown {where} {unknown[0]!r} (known: {', '.join(sorted(cls.keys()))})")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cli_command(config: type, head: list[inspect.Parameter], tail: list[inspect.Parameter],
                run: Callable[..., None], doc: str) -> Callable[..., None]:
    """A typer command whose options are ``head``, then one per field of ``config`` (same name,
    type, default and help), then ``tail``; it calls ``run(**values)``."""
    import typer
    from typing_extensions import Annotated

    hints = typing.get_type_hints(config)
    params = list(head)
    for f in dataclasses.fields(config):
        flags = (f.metadata["flag"],) if "flag" in f.metadata else ()
        option = typer.Option(*flags, help=f.metadata.get("help"))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=Annotated[hints[f.name], option]))
    params += tail

    def command(**values: Any) -> None:
        run(**values)

    command.__signature__ = inspect.Signature(params)
    command.__doc__ = doc
    return command


def option(name: str, annotation: Any, default: Any = inspect.Parameter.empty, *flags: str, **kwargs: Any
           ) -> inspect.Parameter:
    """A CLI option outside the config (``head``/``tail`` of ``cli_command``)."""
    import typer
    from typing_extensions import Annotated

    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(*flags, **kwargs)])
