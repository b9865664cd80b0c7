"""The report's efficiency table says when a strategy never reached random's Dice."""

from __future__ import annotations

from atlasloop.loop.report import efficiency_lines


def _efficiency(attention_reached: list[bool]) -> dict:
    per_seed = [
        {"seed": seed, "reached": {"attention": hit, "random": True}, "minutes": {}, "ratios": {}}
        for seed, hit in enumerate(attention_reached)
    ]
    return {
        "budget_min": 150.0,
        "per_seed": per_seed,
        "median_minutes": {"attention": 300.0, "random": 180.0},
        "median_ratios": {"attention": 1.7, "random": 1.0},
        "minutes_ratio_attention_vs_random": 1.7,
        "ratio_spread": [1.6, 1.73],
    }


def test_a_strategy_that_never_reached_randoms_dice_is_shown_as_a_lower_bound():
    text = "\n".join(efficiency_lines(_efficiency([False, False, True])))
    assert "| >300.0 | >1.700 | 1 of 3 |" in text  # its plan's minutes, not minutes to the target
    assert "| 180.0 | 1.000 | 3 of 3 |" in text
    assert "at least 1.700" in text


def test_a_strategy_that_reached_it_on_every_seed_is_shown_as_measured():
    text = "\n".join(efficiency_lines(_efficiency([True, True, True])))
    assert "| 300.0 | 1.700 | 3 of 3 |" in text and ">" not in text.split("| strategy |")[1].split("**")[0]
    assert "**Minutes attention needs / minutes random needs: 1.700**" in text
