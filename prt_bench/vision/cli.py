"""Commands of this area (placeholders until the area lands; light imports only)."""

import typer

def train_vision() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def eval_vision() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def profile_vision() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


