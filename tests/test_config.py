"""config.py: defaults, one clear line per problem, secrets from the environment, masking."""
import pytest

from config import ConfigError, parse_config


def test_parse_when_empty_then_defaults_are_a_working_sim_paper_config():
    cfg = parse_config("")
    assert cfg.venue == "sim" and cfg.mode == "paper"
    assert cfg.primary_quotes == ("USDT", "USDC", "BTC", "ETH")
    assert str(cfg.max_start["BTC"]) == "0.002"
    assert cfg.slots == 2


def test_parse_when_unknown_key_and_bad_values_then_every_problem_is_one_line():
    text = "[engine]\nslots = 0\nmin_profit_bps = abc\nbogus = 1\n[nope]\nx=1\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "t.ini")
    probs = ei.value.problems
    assert any("unknown key 'bogus'" in p for p in probs)
    assert any("unknown section [nope]" in p for p in probs)
    assert any("slots = '0': must be >= 1" in p for p in probs)
    assert any("min_profit_bps = 'abc': expected a number" in p for p in probs)
    assert len(probs) == 4


def test_parse_when_kucoin_venue_without_secrets_then_names_the_env_variables():
    with pytest.raises(ConfigError) as ei:
        parse_config("[engine]\nvenue = kucoin\nmode = live\n", "live.ini", environ={})
    (p,) = ei.value.problems
    assert "KUCOIN_API_SECRET" in p and "KUCOIN_API_PASSPHRASE" in p


def test_parse_when_secrets_in_environment_then_loaded_and_never_printed():
    env = {"K": "key-123", "S": "sec-ret-value", "P": "pass-phrase-value"}
    text = ("[engine]\nvenue = kucoin\nmode = live\n[credentials]\n"
            "api_key_env = K\napi_secret_env = S\napi_passphrase_env = P\n")
    cfg = parse_config(text, environ=env)
    assert cfg.secrets.api_secret == "sec-ret-value"
    assert cfg.rest_url == "https://api.kucoin.com"
    shown = cfg.describe() + repr(cfg) + str(cfg.secrets)
    assert "sec-ret-value" not in shown and "pass-phrase-value" not in shown


def test_parse_when_bad_secret_value_then_error_hides_it():
    with pytest.raises(ConfigError) as ei:
        parse_config("[credentials]\nkey_version = 7\n")
    assert "key_version = '7': must be <= 3" in str(ei.value)


def test_parse_when_max_start_misses_a_primary_then_error():
    with pytest.raises(ConfigError) as ei:
        parse_config("[engine]\nprimary_quotes = USDT,DAI\nmax_start = USDT=10\n")
    assert "no amount for primary quote DAI" in str(ei.value)


# -- python config.py as a program; secrets in a file others can read ------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def config_py(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("KUCOIN_")}
    e.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "config.py"), *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=30)


def test_config_py_when_no_argument_then_usage_and_exit_2():
    r = config_py()
    assert r.returncode == 2
    assert r.stderr.startswith("usage: python config.py CONFIG.ini") and "Traceback" not in r.stderr


def test_config_py_when_help_then_usage_on_stdout_and_exit_0():
    r = config_py("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: python config.py CONFIG.ini")


def test_config_py_when_live_ini_and_no_secrets_in_environment_then_valid_and_names_them():
    r = config_py("live.example.ini")
    assert r.returncode == 0, r.stderr
    assert "KUCOIN_API_KEY (NOT SET)" in r.stdout and "KUCOIN_API_PASSPHRASE (NOT SET)" in r.stdout
    r = config_py("live.example.ini", env={"KUCOIN_API_KEY": "k"})
    assert "KUCOIN_API_KEY (set)" in r.stdout and "KUCOIN_API_SECRET (NOT SET)" in r.stdout


def test_needed_env_when_secret_is_literal_then_not_asked_from_environment(tmp_path):
    p = tmp_path / "x.ini"
    p.write_text("[engine]\nvenue = kucoin\n[credentials]\napi_key_env = MY_KEY\napi_secret = s3cr3t\n")
    cfg = config.load_config(str(p), environ={}, require_secrets=False)
    assert config.needed_env(cfg, environ={"MY_KEY": "k"}) == [("MY_KEY", True), ("KUCOIN_API_PASSPHRASE", False)]
    sim = config.parse_config("[engine]\nvenue = sim\n", "sim.ini", environ={})
    assert config.needed_env(sim, environ={}) == []


def test_secret_file_problem_when_literal_secret_and_group_or_world_readable_then_reported(tmp_path):
    p = tmp_path / "live.ini"
    p.write_text("[credentials]\napi_secret = s3cr3t-value\n")
    for mode, bad in ((0o644, True), (0o640, True), (0o600, False), (0o400, False)):
        p.chmod(mode)
        msg = config.secret_file_problem(str(p))
        assert bool(msg) == bad, oct(mode)
        assert "s3cr3t-value" not in msg
    p.write_text("[credentials]\napi_secret =\napi_secret_env = X\n")   # no literal secret
    p.chmod(0o644)
    assert config.secret_file_problem(str(p)) == ""


def test_describe_when_alert_url_has_a_path_then_path_hidden():
    cfg = config.parse_config("[engine]\nalert_url = https://hooks.example.com:8443/services/T0/B0/s3cr3tpath\n")
    text = cfg.describe()
    assert "alert_url = https://hooks.example.com:8443/<hidden>" in text
    assert "s3cr3tpath" not in text and "services" not in text
    assert "alert_url = http://127.0.0.1:9" in config.parse_config("[engine]\nalert_url = http://127.0.0.1:9\n").describe()


def test_parse_when_search_keys_out_of_range_then_one_line_each():
    with pytest.raises(ConfigError) as ei:
        parse_config("[engine]\nsearch_tol_bps = -1\nmax_scan = 0\n", "t.ini")
    probs = ei.value.problems
    assert any("search_tol_bps = '-1': must be >= 0" in p for p in probs)
    assert any("max_scan = '0': must be >= 1" in p for p in probs)
    assert len(probs) == 2
