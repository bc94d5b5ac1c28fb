"""Commands of this area (placeholders until the area lands; light imports only)."""

import typer

def run() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


