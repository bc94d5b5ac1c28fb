"""Commands of this area (placeholders until the area lands; light imports only)."""

import typer

def build_lm() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def build_vision() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


