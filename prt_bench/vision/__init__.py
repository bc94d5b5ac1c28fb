"""Vision: open_clip bases under zero-shot heads, FT / PRT recipes, the evaluator and the profile."""
