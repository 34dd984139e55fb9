"""Config: durations, steps, funnel.toml validation with did-you-mean."""

import pytest

from funnel.config import DEFAULT_STEPS, Config, load_config, parse_duration, parse_steps
from funnel.errors import ConfigError


@pytest.mark.parametrize("text,us", [("30m", 1_800_000_000), ("24h", 86_400_000_000), ("7d", 604_800_000_000),
                                     ("90s", 90_000_000), ("1w", 604_800_000_000), ("1.5h", 5_400_000_000)])
def test_parse_duration(text, us):
    assert parse_duration(text) == us


@pytest.mark.parametrize("bad", ["banana", "10", "-5m", "0s", "5 parsecs"])
def test_bad_duration_names_the_value(bad):
    with pytest.raises(ConfigError) as e:
        parse_duration(bad, "--window")
    assert "--window" in str(e.value) and "24h" in str(e.value)


def test_parse_steps_with_alternatives():
    steps = parse_steps("cart=add_to_cart|Product Added,begin_checkout,buy=purchase")
    assert [s.name for s in steps] == ["cart", "begin_checkout", "buy"]
    assert steps[0].events == ("add_to_cart", "Product Added")
    assert steps[1].events == ("begin_checkout",)


@pytest.mark.parametrize("spec", ["a", "a,a", "a=x,b=x", "=x,b"])
def test_bad_steps(spec):
    with pytest.raises(ConfigError):
        parse_steps(spec)


def test_defaults():
    cfg = Config()
    assert cfg.step_names == ("cart", "checkout", "shipping", "payment", "purchase")
    assert "add_to_cart" in DEFAULT_STEPS[0].events and "checkout_completed" in DEFAULT_STEPS[-1].events
    assert cfg.window == 86_400_000_000 and cfg.session_timeout == 1_800_000_000


def test_toml_file(tmp_path):
    p = tmp_path / "funnel.toml"
    p.write_text('[columns]\ntimestamp = "when"\n[time]\ntimezone = "Europe/Helsinki"\n'
                 '[funnel]\nwindow = "2h"\norder = "strict"\n'
                 '[[funnel.steps]]\nname = "cart"\nevents = ["add"]\n'
                 '[[funnel.steps]]\nname = "buy"\nevents = ["buy"]\n')
    cfg = load_config(p)
    assert cfg.columns == {"timestamp": "when"}
    assert cfg.timezone == "Europe/Helsinki" and cfg.window == 7_200_000_000 and cfg.order == "strict"
    assert cfg.step_names == ("cart", "buy")


def test_unknown_key_suggests(tmp_path):
    p = tmp_path / "funnel.toml"
    p.write_text('[time]\ntimout = "30m"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "timout" in str(e.value) and "session_timeout" in str(e.value)


def test_unknown_section_and_role(tmp_path):
    p = tmp_path / "funnel.toml"
    p.write_text('[colums]\n')
    with pytest.raises(ConfigError, match="did you mean 'columns'"):
        load_config(p)
    p.write_text('[columns]\ntimestmp = "x"\n')
    with pytest.raises(ConfigError, match="timestamp"):
        load_config(p)


def test_pyproject_tool_section(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.funnel.funnel]\nwindow = "1h"\n')
    assert load_config(search_dir=tmp_path).window == 3_600_000_000


def test_invalid_toml_and_timezone(tmp_path):
    p = tmp_path / "funnel.toml"
    p.write_text("[time\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    p.write_text('[time]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match="time zone"):
        load_config(p)


def test_library_keywords_take_the_forms_a_caller_writes():
    """funnel.analyze(..., steps=..., window=...) goes through Config.with_overrides: the
    natural Python forms are accepted and checked as the config file's values are."""
    from datetime import timedelta

    from funnel.config import Step

    cfg = Config().with_overrides(steps="add_to_cart,checkout=begin_checkout|Checkout Started,purchase",
                                  window="2h", session_timeout=timedelta(minutes=45), order="strict",
                                  exclude="refund")
    assert cfg.step_names == ("add_to_cart", "checkout", "purchase")
    assert cfg.steps[1] == Step("checkout", ("begin_checkout", "Checkout Started"))
    assert cfg.window == 2 * 3600 * 10**6 and cfg.session_timeout == 45 * 60 * 10**6
    assert cfg.exclude == ("refund",) and cfg.order == "strict"
    listed = Config().with_overrides(steps=["add_to_cart", Step("purchase", ("purchase",))], window=10**6)
    assert listed.step_names == ("add_to_cart", "purchase") and listed.window == 10**6
    for bad, msg in [({"steps": ["add_to_cart"]}, "at least two steps"), ({"window": "soon"}, "invalid window"),
                     ({"window": 0}, "invalid window"), ({"order": "sorted"}, "invalid order"),
                     ({"timezone": "Mars/Olympus"}, "unknown time zone"), ({"windw": "1h"}, "unknown setting 'windw'")]:
        with pytest.raises(ConfigError, match=msg):
            Config().with_overrides(**bad)


def test_analyze_accepts_steps_as_a_list(tmp_path):
    from conftest import SAMPLE_EVENTS

    import funnel

    rep = funnel.analyze(SAMPLE_EVENTS, steps=["add_to_cart", "purchase"], funnel_only=True).report
    assert [s.name for s in rep.funnel.steps] == ["add_to_cart", "purchase"]
