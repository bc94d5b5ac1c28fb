"""Commands of this area (placeholders until the area lands; light imports only)."""

from pathlib import Path
from typing import Optional

import typer

from prt_bench.mini.vision import BENCHMARK


def _shipped_option(folder: str):
    return typer.Option(True, "--shipped/--no-shipped", help=f"Take the bases shipped in {folder} whose sha256 "
                        "check out (default) instead of pretraining them.")


def _verify_option():
    return typer.Option(False, "--verify", help="Pretrain every shipped base again (at the thread count they were "
                        "built with) and compare them bit for bit; exit 1 on a difference.")


def _verify(rebuild_and_compare) -> None:
    """--verify: rebuild the shipped parts, print each one's comparison, exit 1 on a difference."""
    import time

    t0 = time.time()
    try:
        found = rebuild_and_compare()
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e)) from e
    for part, differ in found.items():
        typer.echo(f"{part}\t{'bitwise equal' if not differ else 'DIFFERS: ' + ', '.join(differ)}")
    typer.echo(f"# rebuilt and compared in {time.time() - t0:.1f}s", err=True)
    raise typer.Exit(1 if any(found.values()) else 0)


def build_lm(
    variant: str = typer.Option("default", help="default: the benchmark's bases; micro: toy bases in seconds (tests)."),
    out: Optional[Path] = typer.Option(None, help="Cache root (default: .cache/mini/lm); the build goes to OUT/<config-hash>/."),
    jobs: Optional[int] = typer.Option(None, help="Bases pretrained at once (default: one per CPU core)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Threads of each pretraining process (default: the cores "
                                          "shared among the bases built at once). Set it when several builds share "
                                          "the machine; a base's bits depend on it (recorded in its manifest)."),
    config: Optional[Path] = typer.Option(None, help="Another base-family YAML (default: prt_bench/mini/lm_bases.yaml)."),
    only: list[str] = typer.Option(None, help="Build only these bases (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole build record as JSON."),
    shipped: bool = _shipped_option("worlds/mini-lm/"),
    verify: bool = _verify_option(),
    ship: bool = typer.Option(False, "--ship", help="Write the built tokenizer and bases to worlds/mini-lm/ with "
                              "their sha256 (maintainers, after changing the world)."),
) -> None:
    """Pretrain the mini language bases (cached by config hash) and write the mini_gsm / mini_ifeval data;
    the shipped bases (worlds/mini-lm/) are used after checking their hashes."""
    import json
    import time

    from prt_bench.mini.lm.build import build_lm as run
    from prt_bench.mini.lm.build import ship as ship_world
    from prt_bench.mini.lm.build import verify_shipped

    t0 = time.time()
    if verify:
        _verify(lambda: verify_shipped(variant, jobs=jobs))
    try:
        record = run(variant, out, jobs=jobs, config_path=config, only=only or None, shipped=shipped,
                     threads=threads)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    if json_out:
        typer.echo(json.dumps(record, indent=2))
        return
    for name, path in record["bases"].items():
        typer.echo(f"{name}\t{path}")
    typer.echo(f"data\t{record['data_dir']}")
    built = ", ".join(record["built_now"]) or "none"
    taken = ", ".join(record.get("shipped_now") or []) or "none"
    typer.echo(f"# pretrained: {built}; taken from worlds/mini-lm: {taken}; {time.time() - t0:.1f}s", err=True)
    if ship:
        typer.echo(f"# shipped to {ship_world(variant, out)}", err=True)


def build_vision(
    variant: str = typer.Option(BENCHMARK, help="The world's variant (prt_bench/mini/vision.yaml); the default is "
                                "the benchmark's, whose bases are shipped; micro: a seconds-long build for tests."),
    out: str = typer.Option(None, help="Cache root (default .cache/mini/vision); bases go to OUT/<config-hash>/<name>/."),
    data_dir: str = typer.Option(None, help="Data dir holding fashion_mnist/ (default: $PRT_BENCH_DATA, ../shared/data)."),
    only: list[str] = typer.Option(None, help="Build only these bases (repeatable)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    shipped: bool = _shipped_option("worlds/mini-vision/"),
    verify: bool = _verify_option(),
    ship: bool = typer.Option(False, "--ship", help="Write the built bases to worlds/mini-vision/ with their sha256 "
                              "(maintainers, after changing the world)."),
) -> None:
    """Pretrain the mini vision bases (small open_clip CLIPs on Fashion-MNIST with noisy captions); prints name -> folder.
    The shipped bases (worlds/mini-vision/) are used after checking their hashes."""
    import json

    from prt_bench.mini.vision import build_vision_world, head_spreads, ship_vision, variants, verify_shipped_vision
    from prt_bench.vision.heads import HEAD_COSINE, collapsed

    if variant not in variants():
        raise typer.BadParameter(f"variant must be one of {variants()}", param_hint="--variant")
    if verify:
        _verify(lambda: verify_shipped_vision(variant, data_dir=data_dir, progress=progress))
    paths = build_vision_world(cache_root=out, variant=variant, data_dir=data_dir, progress=progress,
                               only=only or None, shipped=shipped)
    typer.echo(json.dumps({name: str(path) for name, path in paths.items()}, indent=2))
    # a head whose names point one way cannot be tuned apart under FT or PRT: say so before any suite runs
    for name, head in head_spreads(paths, variant).items():
        typer.echo(f"# {name}: zero-shot head at mean class-name cosine {head['mean cosine']:.3f} (closest: "
                   f"{head['closest pair']}, {head['closest cosine']:.3f})"
                   + (f" -- COLLAPSED (> {HEAD_COSINE:g}): fine-tuning under it will miss whole classes; "
                      "this draw of the world is unfit (another seed_offset)" if collapsed(head) else ""), err=True)
    if ship:
        typer.echo(f"# shipped to {ship_vision(variant, out)}", err=True)


