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


@pytest.mark.parametrize("spec, n", [("a,,b", 2), ("a,b,", 3), (",a,b", 1), ("a, ,b", 2)])
def test_bug_empty_step_in_steps_was_dropped(spec, n):
    """--steps 'a,,b' ran the funnel a,b without a word (QA)."""
    with pytest.raises(ConfigError) as e:
        parse_steps(spec)
    assert str(e.value) == (f"empty step in --steps {spec!r} (step {n}) — remove the extra comma, "
                            "or name the missing step: e.g. a,b,c")


@pytest.mark.parametrize("steps", ['"add_to_cart,,purchase"', '["add_to_cart", "", "purchase"]'])
def test_bug_empty_step_in_funnel_toml_steps(tmp_path, steps):
    p = tmp_path / "funnel.toml"
    p.write_text(f"[funnel]\nsteps = {steps}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert "empty step in" in str(e.value) and "funnel.toml" in str(e.value) and "funnel.steps" in str(e.value)


def test_empty_step_through_the_cli():
    from conftest import SAMPLE_EVENTS, run_cli

    r = run_cli("analyze", str(SAMPLE_EVENTS), "--steps", "add_to_cart,,purchase", "-q")
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: empty step in --steps 'add_to_cart,,purchase' (step 2) — remove the extra "
                                "comma, or name the missing step: e.g. a,b,c")


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


BAD_VALUES = [   # (funnel.toml text, what the one-line error must say); found by a fuzz of config files
    ("time = 5", "[time] must be a table, got 5"),
    ('funnel = "x"', "[funnel] must be a table, got 'x'"),
    ('[funnel]\nexclude = ["view_cart", 1]', "funnel.exclude[1] must be a string, got 1"),
    ("[funnel]\norder = 1", "funnel.order must be a string, got 1"),
    ('[funnel]\nlevel = "cart"', "invalid funnel.level 'cart'"),
    ('[funnel]\nsteps = [{name="a", events=[1]}, {name="b"}]', "funnel.steps[0].events[0] must be a string"),
    ('[funnel]\nsteps = [{name="a", events=[]}, {name="purchase"}]', "funnel.steps[0].events is empty"),
    ('[funnel]\nsteps = ["a", 3]', "funnel.steps[1] must be a string or a table, got 3"),
    ('[funnel]\nsteps = ["a", "=b"]', "invalid step '=b' in funnel.steps"),
    ('[funnel]\nsteps = "purchase"', "funnel.steps needs at least two steps"),
    ("[time]\nsession_timeout = 30", "invalid time.session_timeout 30"),
    ("[segments]\ncolumns = [1]", "segments.columns[0] must be a string, got 1"),
    ("[segments]\nmin_size = -5", "segments.min_size must be 1 or more, got -5"),
    ("[gates]\nfail_on = [1]", "gates.fail_on[0] must be a string, got 1"),
    ('[input]\nmax_events_per_session = "x"', "input.max_events_per_session must be a whole number, got 'x'"),
    ("[input]\nmax_events_per_session = 0", "input.max_events_per_session must be 1 or more, got 0"),
    ("[input]\nmax_events_per_session = 2.5", "must be a whole number, got 2.5"),
    ("[input]\nformat = 5", "input.format must be a string, got 5"),
    ('[report]\ninclude_ids = "no"', "report.include_ids must be true or false, got 'no'"),
    ("[report]\ninclude_ids = 0", "report.include_ids must be true or false, got 0"),
]


def test_steps_in_the_config_may_be_written_as_the_steps_flag_takes_them(tmp_path):
    """steps = ["add_to_cart", "checkout=begin_checkout|checkout_started", ...] (or one string,
    "a,b,c") reads as --steps does, and may mix with tables; it was "must be a table"."""
    p = tmp_path / "funnel.toml"
    want = load_config(None).with_overrides(steps="add_to_cart,checkout=begin_checkout|checkout_started,purchase").steps
    for text in ('steps = ["add_to_cart", "checkout=begin_checkout|checkout_started", "purchase"]',
                 'steps = "add_to_cart, checkout=begin_checkout|checkout_started, purchase"',
                 ('steps = ["add_to_cart", {name="checkout", events=["begin_checkout", "checkout_started"]}, '
                  '"purchase"]')):
        p.write_text(f"[funnel]\n{text}\n")
        assert load_config(p).steps == want, text


@pytest.mark.parametrize("text, words", BAD_VALUES)
def test_a_value_of_the_wrong_kind_is_a_clear_error(tmp_path, text, words):
    """Each was a traceback ('unexpected TypeError'), a silent misreading (include_ids = "no"
    put the ids into the HTML report; events = [] made a step no event reaches) or every row
    rejected (max_events_per_session = 0). Every message names the file."""
    p = tmp_path / "funnel.toml"
    p.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}: ") and words in str(e.value), str(e.value)


def test_a_config_mistake_from_the_cli_is_one_line(tmp_path):
    from conftest import SAMPLE_EVENTS, run_cli

    for text, words in BAD_VALUES[:4]:
        (tmp_path / "funnel.toml").write_text(text + "\n")
        r = run_cli("analyze", str(SAMPLE_EVENTS), "-q", "--json", "-", cwd=tmp_path)
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


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
                     ({"timezone": "Mars/Olympus"}, "unknown time zone"), ({"windw": "1h"}, "unknown setting 'windw'"),
                     ({"max_events_per_session": 0}, "max_events_per_session must be 1 or more"),
                     ({"include_ids": "no"}, "include_ids must be true or false"),
                     ({"exclude": ["refund", 1]}, r"exclude\[1\] must be a string")]:
        with pytest.raises(ConfigError, match=msg):
            Config().with_overrides(**bad)


def test_analyze_accepts_steps_as_a_list(tmp_path):
    from conftest import SAMPLE_EVENTS

    import funnel

    rep = funnel.analyze(SAMPLE_EVENTS, steps=["add_to_cart", "purchase"], funnel_only=True).report
    assert [s.name for s in rep.funnel.steps] == ["add_to_cart", "purchase"]


def test_did_you_mean_knows_the_same_words_in_another_order():
    from funnel.errors import did_you_mean

    names = ["add_to_cart", "begin_checkout", "add_payment_info", "purchase", "view_cart"]
    assert did_you_mean("checkout_begin", names) == ["begin_checkout"]   # (spelling alone finds nothing)
    assert did_you_mean("Begin Checkout", names)[0] == "begin_checkout"
    assert did_you_mean("purchased", names) == ["purchase"] and did_you_mean("__", names) == []


def test_an_exclusion_event_that_is_a_step_event_is_an_error(tmp_path):
    """--exclude purchase excluded every buyer (abandonment 1.0, exit 0, a warning that no
    session reached 'purchase'); --exclude add_to_cart every cart. An exclusion event that is a
    step's own event is a config error (exit 2, one line) naming where it was given: the flag,
    or the config file and key. Checked once every source is applied: a --steps without that
    event mends the file's exclusion."""
    from conftest import SAMPLE_EVENTS, run_cli

    import funnel

    for event, step in (("purchase", "purchase"), ("add_to_cart", "cart")):
        r = run_cli("analyze", str(SAMPLE_EVENTS), "--exclude", event, "-q", "--json", "-")
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"error: --exclude {event!r} is an event of step {step!r}: an exclusion "
                                   "event must not be a funnel step's event"), r.stderr
    (tmp_path / "funnel.toml").write_text('[funnel]\nexclude = ["refund", "purchase"]\n')
    for cmd in (["analyze", str(SAMPLE_EVENTS), "-q", "--json", "-"], ["validate", str(SAMPLE_EVENTS)],
                ["explain", "s1", str(SAMPLE_EVENTS)]):
        r = run_cli(*cmd, cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (cmd, r.stderr)
        assert "error: funnel.toml [funnel] exclude 'purchase' is an event of step 'purchase'" in r.stderr, r.stderr
    r = run_cli("analyze", str(SAMPLE_EVENTS), "--steps", "add_to_cart,begin_checkout", "-q", "--json", "-",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with pytest.raises(ConfigError, match="--exclude 'Order Completed' is an event of step 'purchase'"):
        funnel.analyze(SAMPLE_EVENTS, exclude=["Order Completed"], funnel_only=True)


def test_a_column_role_from_the_config_file_that_names_no_column_names_the_file(tmp_path):
    """[columns] timestamp = "time_stamp" in funnel.toml was reported against the events file
    ('events.csv: column 'time_stamp' set for role 'timestamp' does not exist'): the error names
    the config file and key (and the events file it is not in); a --column names the flag."""
    from conftest import SAMPLE_EVENTS, run_cli

    (tmp_path / "funnel.toml").write_text('[columns]\ntimestamp = "time_stamp"\n')
    for cmd in (["analyze", str(SAMPLE_EVENTS), "-q", "--json", "-"], ["validate", str(SAMPLE_EVENTS)]):
        r = run_cli(*cmd, cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f'error: funnel.toml [columns] timestamp = "time_stamp": no such column in '
                                   f"{SAMPLE_EVENTS} — did you mean 'timestamp'?"), r.stderr
    r = run_cli("validate", str(SAMPLE_EVENTS), "--column", "timestamp=ts", "--column", "event=event", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(f"error: --column timestamp=ts: no such column in {SAMPLE_EVENTS}")
