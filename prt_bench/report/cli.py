"""Commands of this area (placeholders until the area lands; light imports only)."""

import typer

def report() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def submit() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def leaderboard() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


