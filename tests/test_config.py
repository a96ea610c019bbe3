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
