"""`python -m prt_bench ...` is the `prt-bench` command; what launchers that take a module need:
`accelerate launch --num_processes 2 -m prt_bench lm-eval --model prt ...`."""

from prt_bench.cli import main

if __name__ == "__main__":
    main()
