"""Commands of this area (placeholders until the area lands; light imports only)."""

import typer

def train_lm() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def profile_lm() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def lm_eval() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


