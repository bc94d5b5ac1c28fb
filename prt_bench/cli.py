"""The `prt-bench` command.  Each area owns its commands in its own `cli` module (light
imports only: torch and friends are imported inside the commands), and this file only
arranges them into groups."""

from __future__ import annotations

import typer

from prt_bench.lm import cli as lm_cli
from prt_bench.mini import cli as mini_cli
from prt_bench.report import cli as report_cli
from prt_bench.suite import cli as suite_cli
from prt_bench.vision import cli as vision_cli

app = typer.Typer(
    name="prt-bench",
    help="Benchmark suite and evaluation harness for Portable Reward Tuning (PRT).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
train = typer.Typer(help="Train a fine-tuned model (ft) or a portable reward (prt).", no_args_is_help=True)
evaluate = typer.Typer(help="Evaluate bases, FT models, PRT and EFT combinations.", no_args_is_help=True)
profile = typer.Typer(help="Measure time and memory of FT vs PRT vs EFT, side by side.", no_args_is_help=True)
mini = typer.Typer(help="Build the mini world: small bases trained by prt-bench.", no_args_is_help=True)
mini_build = typer.Typer(help="Pretrain the mini bases (cached by config hash).", no_args_is_help=True)
diagnose = typer.Typer(help="Why a transfer wins or loses, from a finished run's records.", no_args_is_help=True)
reference = typer.Typer(help="The committed reference results (results/reference/<suite>/).", no_args_is_help=True)

train.command("lm")(lm_cli.train_lm)
train.command("vision")(vision_cli.train_vision)
evaluate.command("vision")(vision_cli.eval_vision)
profile.command("lm")(lm_cli.profile_lm)
profile.command("vision")(vision_cli.profile_vision)
mini_build.command("lm")(mini_cli.build_lm)
mini_build.command("vision")(mini_cli.build_vision)
mini.add_typer(mini_build, name="build")

app.add_typer(train, name="train")
app.add_typer(evaluate, name="eval")
app.add_typer(profile, name="profile")
app.add_typer(mini, name="mini")
diagnose.command("lm")(lm_cli.diagnose_lm)
diagnose.command("vision")(vision_cli.diagnose_vision)
app.add_typer(diagnose, name="diagnose")
# lm-eval's own CLI, every flag of it, with the `prt` and `eft` models registered.
app.command(
    "lm-eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    help="Run lm-eval's own CLI (all its flags) with the `prt` and `eft` models registered.",
)(lm_cli.lm_eval)
app.command("run")(suite_cli.run)
app.command("compare")(suite_cli.compare)
app.command("rescore")(suite_cli.rescore)
reference.command("update")(suite_cli.reference_update)
app.add_typer(reference, name="reference")
app.command("report")(report_cli.report)
app.command("submit")(report_cli.submit)
leaderboard = typer.Typer(help="Verify submissions and rank them; re-run sampled cells of one.", no_args_is_help=True)
leaderboard.command("build")(report_cli.leaderboard)
leaderboard.command("verify")(report_cli.leaderboard_verify)
app.add_typer(leaderboard, name="leaderboard")
export = typer.Typer(help="Results in other tools' formats.", no_args_is_help=True)
export.command("clip-benchmark")(report_cli.export_clip_benchmark)
app.add_typer(export, name="export")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
