"""Commands of this area (placeholders until the area lands; light imports only)."""

import typer

def build_lm() -> None:
    """Not built yet."""
    raise typer.Exit("not built yet")


def build_vision(
    variant: str = typer.Option("default", help="default: the benchmark's bases; micro: a seconds-long build for tests."),
    out: str = typer.Option(None, help="Cache root (default .cache/mini/vision); bases go to OUT/<config-hash>/<name>/."),
    data_dir: str = typer.Option(None, help="Data dir holding fashion_mnist/ (default: $PRT_BENCH_DATA, ../shared/data)."),
    only: list[str] = typer.Option(None, help="Build only these bases (repeatable)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Pretrain the mini vision bases (small open_clip CLIPs on Fashion-MNIST with noisy captions); prints name -> folder."""
    import json

    from prt_bench.mini.vision import VARIANTS, build_vision_world

    if variant not in VARIANTS:
        raise typer.BadParameter(f"variant must be one of {VARIANTS}", param_hint="--variant")
    paths = build_vision_world(cache_root=out, variant=variant, data_dir=data_dir, progress=progress,
                               only=only or None)
    typer.echo(json.dumps({name: str(path) for name, path in paths.items()}, indent=2))


