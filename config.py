"""The ini schema: every option, its default, its check, and where secrets come from.

Owned by the main thread (run.py calls `load_config` once at start-up; nothing else reads
the ini). Every problem found is reported on its own line (unknown section or key, bad
value, out of range, missing secret in live mode against KuCoin) and `load_config` raises
ConfigError with all of them at once, so a trader fixes the file in one pass.

Secrets: `api_key`, `api_secret` and `api_passphrase` are read from the environment
variables named in [credentials] (defaults KUCOIN_API_KEY, ...), or from the ini if the
trader insists. They live only in `Config.secrets`, whose repr is masked, and
`Config.describe()` (the effective config logged at start) never prints them.

Run `python config.py FILE.ini` to validate a file and print the effective config; it needs no
secret in the environment (it names the variables a start will need and says which are set).

File permissions: an ini that holds a literal secret and that other users can read is
reported by `secret_file_problem` (run.py warns, and refuses a live KuCoin start unless
`--allow-readable-secrets`).
"""
from __future__ import annotations

import configparser
import os
import stat
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

VENUES = ("sim", "kucoin")
MODES = ("paper", "live")
ORDER_PATHS = ("async", "sync")
FIRE_FROM = ("executor", "hot")
TLS_IO = ("held", "ssl")
UNWIND = ("off", "market")
LEG0_ORDER = ("market", "ioc")
LEG0_BUILD = ("kernel", "python")
LEG0_SEND = ("kernel", "python")
KILL_ACTIONS = ("pause", "stop")      # docs/design.md 12: stay up paused, or end the session (exit 3)
KILL_INFLIGHT = ("finish", "cancel")  # a trip lets in-flight triangles finish, or stops them between legs
# the limits that may not be 0 (off) without i_accept_losses (docs/design.md 12)
KILL_LIMITS = ("kill_max_loss", "kill_trailing_drawdown", "kill_max_consecutive_failed", "kill_max_held")
ALERT_FORMATS = ("json", "telegram")


class ConfigError(ValueError):
    """All problems found in one config file, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _amounts(s: str) -> dict[str, Decimal]:
    """'USDT=100, BTC=0.002' -> {'USDT': Decimal('100'), 'BTC': Decimal('0.002')}"""
    out: dict[str, Decimal] = {}
    for item in _csv(s):
        if "=" not in item:
            raise ValueError(f"expected CURRENCY=AMOUNT, got {item!r}")
        k, v = item.split("=", 1)
        try:
            d = Decimal(v.strip())
        except InvalidOperation:
            raise ValueError(f"{v.strip()!r} is not a decimal amount") from None
        if not d.is_finite() or d < 0:
            raise ValueError(f"amount for {k.strip()} must be >= 0")
        out[k.strip().upper()] = d
    return out


def _choice(options):
    def parse(s: str) -> str:
        v = s.strip().lower()
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return v
    return parse


def _num(kind, lo=None, hi=None):
    def parse(s: str):
        try:
            v = kind(s.strip())
        except ValueError:
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
        if lo is not None and v < lo:
            raise ValueError(f"must be >= {lo}")
        if hi is not None and v > hi:
            raise ValueError(f"must be <= {hi}")
        return v
    return parse


def _str(s: str) -> str:
    return s.strip()


def _ca_file(s: str) -> str:
    """A PEM file of CA certificates to trust for TLS instead of the system store."""
    p = s.strip()
    if p and not os.path.isfile(p):
        raise ValueError("no such file (a PEM file of CA certificates; empty = the system store)")
    if p and not os.access(p, os.R_OK):
        raise ValueError("not readable")
    return os.path.abspath(p) if p else ""


def _cpus(s: str) -> tuple[int, ...]:
    """'0' or '2,3' -> CPU ids for sched_setaffinity; empty = no pinning."""
    out = []
    for item in _csv(s):
        if not item.isdigit():
            raise ValueError(f"expected CPU numbers like 0 or 2,3, got {item!r}")
        if int(item) >= (os.cpu_count() or 1):
            raise ValueError(f"CPU {item} does not exist (this machine has {os.cpu_count()})")
        out.append(int(item))
    return tuple(out)


# section -> key -> (parser, default text). The defaults are what sim.ini documents.
SCHEMA: dict[str, dict[str, tuple]] = {
    "engine": {
        "venue": (_choice(VENUES), "sim"),
        "mode": (_choice(MODES), "paper"),
        "rest_url": (_str, ""),
        "primary_quotes": (_csv, "USDT,USDC,BTC,ETH"),
        "symbols": (_csv, ""),
        "min_profit_bps": (_num(float, -10000, 10000), "5"),
        "max_book_age_ms": (_num(int, 1, 3_600_000), "5000"),
        "max_start": (_amounts, "USDT=100,USDC=100,BTC=0.002,ETH=0.05"),
        "max_levels": (_num(int, 1, 100), "20"),
        "search_tol_bps": (_num(float, 0, 100), "0.1"),   # docs/design.md 5.2
        "max_scan": (_num(int, 1, 10_000), "32"),
        "book_depth": (_num(int, 25, 400), "64"),   # > books.REFILL_MIN (24)
        "max_seq_jump": (_num(int, 1, 10**15), "100000"),
        "silent_book_s": (_num(float, 0.5, 86400), "60"),
        "slots": (_num(int, 1, 16), "2"),
        "fill_timeout_ms": (_num(int, 50, 600_000), "3000"),
        "order_lookup_ms": (_num(int, 100, 600_000), "15000"),
        "unknown_followup_s": (_num(float, 0, 86_400), "900"),
        "ref_currency": (_str, "USDT"),
        "retrigger_ms": (_num(float, 0, 3_600_000), "1000"),
        "order_path": (_choice(ORDER_PATHS), "async"),
        "fire_from": (_choice(FIRE_FROM), "hot"),
        "await_balance": (_bool, "false"),
        "default_taker_fee": (_num(float, 0, 0.1), "0.001"),
        "status_interval_s": (_num(float, 0.2, 3600), "5"),
        "run_seconds": (_num(float, 0, 10_000_000), "0"),
        "switch_interval_us": (_num(float, 10, 100_000), "5000"),
        "warm_interval_us": (_num(float, 0, 1_000_000), "1000"),
        "warm_kernel": (_bool, "true"),
        "warm_books": (_bool, "true"),
        "busy_poll_us": (_num(float, 0, 3_600_000_000), "0"),
        "log_dir": (_str, "runs"),
        # docs/design.md 6.7: leftovers of a FAILED / ABORTED / PARTIAL triangle (and of earlier
        # sessions, at start-up) sold back to the triangle's start currency
        "unwind": (_choice(UNWIND), "off"),
        "unwind_max_loss_bps": (_num(float, 0, 10000), "100"),
        "keep": (lambda s: tuple(c.upper() for c in _csv(s)), ""),
        # docs/design.md 6.7, docs/kucoin.md 5.10: leg 0 as a market order or a limit IOC
        "leg0_order": (_choice(LEG0_ORDER), "market"),
        # docs/design.md 9: leg 0's request sized, signed and framed inside the chunk kernel
        # (orderkern.py) or by the executor's Python (the earlier path, for A/B runs)
        "leg0_build": (_choice(LEG0_BUILD), "kernel"),
        "leg0_send": (_choice(LEG0_SEND), "kernel"),
        # docs/design.md 6.1: level2 frames of one socket read applied before the first of them
        # is decided (1 = each frame decided before the next is parsed)
        "read_ahead": (_num(int, 1, 16), "16"),
        # docs/kucoin.md 1.4: a signed timestamp more than 5 s off is refused; re-measured
        # by the maintenance thread this often (0 = only at start-up)
        "clock_resync_s": (_num(float, 0, 86_400), "60"),
        "record": (_bool, "false"),
        "opportunity_floor_bps": (_num(float, -10000, 10000), "0"),
        "opportunities": (_bool, "true"),
        "paper_consume": (_bool, "true"),
        "cpus": (_cpus, ""),
        "ca_file": (_ca_file, ""),
        "tls_io": (_choice(TLS_IO), "held"),
        "html_report": (_bool, "true"),
        "metrics_port": (_num(int, 0, 65535), "0"),
        "metrics_host": (_str, "127.0.0.1"),
        "alert_url": (_str, ""),
        "alert_format": (_choice(ALERT_FORMATS), "json"),
        "alert_chat_id": (_str, ""),
        "alert_token_env": (_str, "TELEGRAM_BOT_TOKEN"),
        "alert_statuses": (_csv, "FAILED,UNKNOWN,KILLED"),
        "alert_link_down_s": (_num(float, 1, 86_400), "30"),
    },
    # docs/design.md 12: the kill switch, the rate budget and the back-offs
    "risk": {
        # kill-switch limits, in ref_currency (valued at the best bids) or counts; 0 = off,
        # which is refused unless i_accept_losses = true
        "kill_max_loss": (_num(float, 0, 1e12), "25"),
        "kill_trailing_drawdown": (_num(float, 0, 1e12), "25"),
        "kill_max_consecutive_failed": (_num(int, 0, 1_000_000), "5"),
        "kill_max_held": (_num(float, 0, 1e12), "250"),
        "kill_action": (_choice(KILL_ACTIONS), "pause"),
        "kill_inflight": (_choice(KILL_INFLIGHT), "finish"),
        "kill_check_ms": (_num(int, 50, 60_000), "500"),
        # docs/kucoin.md 7.1: weight kept in a pool beyond the orders of every triangle that
        # may be in flight (lookups, cancels)
        "rate_reserve": (_num(int, 0, 100_000), "10"),
        "reject_backoff_ms": (_num(int, 0, 600_000), "500"),
        "reject_backoff_max_ms": (_num(int, 0, 3_600_000), "30000"),
        "snapshot_backoff_max_ms": (_num(int, 100, 3_600_000), "30000"),
        "i_accept_losses": (_bool, "false"),
    },
    "credentials": {
        "api_key_env": (_str, "KUCOIN_API_KEY"),
        "api_secret_env": (_str, "KUCOIN_API_SECRET"),
        "api_passphrase_env": (_str, "KUCOIN_API_PASSPHRASE"),
        "api_key": (_str, ""),
        "api_secret": (_str, ""),
        "api_passphrase": (_str, ""),
        "key_version": (_num(int, 2, 3), "3"),
    },
    "sim": {
        "port": (_num(int, 0, 65535), "0"),
        "seed": (_num(int, 0, 2**31 - 1), "7"),
        "symbols": (_str, "60"),
        "balances": (_amounts, "USDT=1000,USDC=1000,BTC=0.05,ETH=1,KCS=100"),
        "taker_fee": (_num(float, 0, 0.1), "0.001"),
        "update_rate": (_num(float, 0, 1_000_000), "200"),
        "mispricing_rate": (_num(float, 0, 1000), "0.5"),
        "mispricing_bps": (_num(float, 0, 10000), "40"),
        "take_delay_ms": (_num(int, 0, 600_000), "500"),
        "extra_args": (_str, ""),
        "cpus": (_cpus, ""),
        "tls": (_bool, "false"),
    },
}


@dataclass(frozen=True)
class Secrets:
    api_key: str = ""
    api_secret: str = ""
    api_passphrase: str = ""
    key_version: int = 3

    def __repr__(self) -> str:  # never print a secret, not even by accident in a traceback
        return f"Secrets(api_key={'set' if self.api_key else 'unset'}, secret=***, passphrase=***)"

    __str__ = __repr__

    @property
    def complete(self) -> bool:
        return bool(self.api_key and self.api_secret and self.api_passphrase)


@dataclass(frozen=True)
class Config:
    path: str
    engine: dict
    sim: dict
    secrets: Secrets = field(repr=False)
    risk: dict = field(default_factory=dict)
    env_names: dict = field(default_factory=dict)

    def __getattr__(self, name):  # cfg.min_profit_bps reads [engine]
        eng = self.__dict__.get("engine")
        if eng is not None and name in eng:
            return eng[name]
        raise AttributeError(name)

    @property
    def credential_env(self) -> dict:
        """{'api_key': 'KUCOIN_API_KEY', ...}: the variables [credentials] names."""
        return dict(self.env_names)

    def describe(self) -> str:
        """The effective config as ini text, secrets masked (logged at start-up)."""
        lines = [f"# effective config from {self.path}"]
        for sec, values in (("engine", self.engine), ("risk", self.risk), ("sim", self.sim)):
            lines.append(f"[{sec}]")
            for k, v in values.items():
                if k == "alert_url" and v:
                    v = mask_url(v)
                if isinstance(v, dict):
                    v = ",".join(f"{a}={b}" for a, b in v.items())
                elif isinstance(v, tuple):
                    v = ",".join(str(x) for x in v)
                lines.append(f"{k} = {v}")
        lines.append("[credentials]")
        lines.append(f"api_key = {'<set>' if self.secrets.api_key else '<unset>'}")
        lines.append("api_secret = <hidden>")
        lines.append("api_passphrase = <hidden>")
        lines.append(f"key_version = {self.secrets.key_version}")
        return "\n".join(lines)


SECRET_KEYS = ("api_key", "api_secret", "api_passphrase")


def mask_url(url: str) -> str:
    """scheme://host[:port]/... : a webhook's path often is its token (Slack, Discord)."""
    from urllib.parse import urlsplit
    p = urlsplit(url)
    host = f"{p.scheme}://{p.hostname or ''}" + (f":{p.port}" if p.port else "")
    return host + ("/<hidden>" if p.path.strip("/") or p.query else "")


def parse_config(text: str, path: str = "<string>", environ=None, require_secrets: bool = True) -> Config:
    """The config from ini text. require_secrets=False (`--check`, `python config.py`):
    missing secrets are not a problem; `needed_env(cfg)` names them."""
    environ = os.environ if environ is None else environ
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    problems: list[str] = []
    try:
        cp.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError([f"{path}: cannot parse: {e}".splitlines()[0]]) from None

    values: dict[str, dict] = {}
    for sec in cp.sections():
        if sec not in SCHEMA:
            problems.append(f"{path}: unknown section [{sec}] (known: {', '.join(SCHEMA)})")
    for sec, keys in SCHEMA.items():
        got = cp[sec] if cp.has_section(sec) else {}
        for k in got:
            if k not in keys:
                problems.append(f"{path}: [{sec}] unknown key '{k}'")
        values[sec] = {}
        for k, (parser, default) in keys.items():
            raw = got.get(k, default) if got else default
            try:
                values[sec][k] = parser(raw)
            except ValueError as e:
                shown = "<hidden>" if k in ("api_secret", "api_passphrase") else repr(raw)
                problems.append(f"{path}: [{sec}] {k} = {shown}: {e}")

    eng, cred = values["engine"], values["credentials"]
    secrets = Secrets(
        api_key=cred.get("api_key") or environ.get(cred.get("api_key_env", ""), ""),
        api_secret=cred.get("api_secret") or environ.get(cred.get("api_secret_env", ""), ""),
        api_passphrase=cred.get("api_passphrase") or environ.get(cred.get("api_passphrase_env", ""), ""),
        key_version=cred.get("key_version", 3),
    )
    if eng.get("venue") == "kucoin":
        if not eng.get("rest_url"):
            eng["rest_url"] = "https://api.kucoin.com"
        if not secrets.complete and require_secrets:
            # Paper mode also signs (order-test endpoint and the private feed need a key).
            missing = [n for n, v in (("api_key", secrets.api_key), ("api_secret", secrets.api_secret),
                                      ("api_passphrase", secrets.api_passphrase)) if not v]
            envs = [cred.get(f"{n}_env", "") for n in missing]
            problems.append(f"{path}: venue = kucoin needs {', '.join(missing)}: set the environment "
                            f"variable(s) {', '.join(envs)} ([credentials] *_env names them)")
    elif eng.get("venue") == "sim" and eng.get("rest_url"):
        problems.append(f"{path}: [engine] rest_url is set but venue = sim starts its own simulator; "
                        f"remove rest_url or set venue = kucoin")
    if eng.get("venue") == "sim" and eng.get("ca_file"):
        problems.append(f"{path}: [engine] ca_file is set but venue = sim trusts its own simulator's CA "
                        f"([sim] tls = true); remove ca_file or set venue = kucoin")
    url = eng.get("alert_url", "")
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"{path}: [engine] alert_url must start with http:// or https://")
    if url and eng.get("alert_format") == "telegram":
        if not eng.get("alert_chat_id"):
            problems.append(f"{path}: [engine] alert_format = telegram needs alert_chat_id")
        if require_secrets and not environ.get(eng.get("alert_token_env", "")):
            problems.append(f"{path}: alert_format = telegram needs the bot token: set the environment "
                            f"variable {eng.get('alert_token_env')} ([engine] alert_token_env names it)")
    if "primary_quotes" in eng and not eng["primary_quotes"]:
        problems.append(f"{path}: [engine] primary_quotes must name at least one currency")
    if "primary_quotes" in eng and "max_start" in eng:
        for q in eng["primary_quotes"]:
            if q not in eng["max_start"]:
                problems.append(f"{path}: [engine] max_start has no amount for primary quote {q}")
    for c in eng.get("keep", ()):
        if not c.isalnum():
            problems.append(f"{path}: [engine] keep = {','.join(eng['keep'])!r}: {c!r} is not a currency code")
    problems += money_losing(eng, values["risk"], path)
    sym = values["sim"].get("symbols")
    if sym is not None and sym != "all" and not (sym.isdigit() and int(sym) >= 3):
        problems.append(f"{path}: [sim] symbols = {sym!r}: expected 'all' or a count >= 3")
    if problems:
        raise ConfigError(problems)
    return Config(path=path, engine=eng, sim=values["sim"], secrets=secrets, risk=values["risk"],
                  env_names={n: cred.get(f"{n}_env", "") for n in SECRET_KEYS})


def money_losing(eng: dict, risk: dict, path: str) -> list[str]:
    """Settings that lose money by construction (docs/design.md 12): refused, one line each,
    unless [risk] i_accept_losses = true says the trader means it (run.py then logs each one
    at start). The check against the account's balance (max_start above it) needs the
    venue and is made at start-up (`balance_problems`)."""
    if risk.get("i_accept_losses"):
        return []
    return [f"{path}: {w}; set [risk] i_accept_losses = true if you mean it"
            for w in money_losing_settings(eng, risk)]


def money_losing_settings(eng: dict, risk: dict) -> list[str]:
    out = []
    bps = eng.get("min_profit_bps")
    if bps is not None and bps < 0:
        out.append(f"[engine] min_profit_bps = {bps:g} signals triangles predicted to lose money")
    for k in KILL_LIMITS:
        if risk.get(k) == 0:
            out.append(f"[risk] {k} = 0 switches that kill-switch limit off")
    return out


def balance_problems(max_start: dict, balances: dict, primaries) -> list[str]:
    """max_start above what the account holds (docs/design.md 12): the engine would size
    from a balance it does not have. One line per primary; empty when all fit."""
    out = []
    for q in primaries:
        have = balances.get(q, 0)
        if q in max_start and max_start[q] > have:
            out.append(f"[engine] max_start {q}={max_start[q]} is above the account's balance {have} {q}")
    return out


def load_config(path: str, environ=None, require_secrets: bool = True) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    return parse_config(text, path, environ, require_secrets)


def needed_env(cfg: Config, environ=None) -> list[tuple[str, bool]]:
    """[(environment variable, set?)] a start of this config reads its secrets from (venue =
    kucoin; none for the simulator, whose credentials are made per run). A secret written in
    the ini itself needs no variable."""
    environ = os.environ if environ is None else environ
    bot = []
    if cfg.alert_url and cfg.alert_format == "telegram":
        bot = [(cfg.alert_token_env, bool(environ.get(cfg.alert_token_env)))]
    if cfg.venue != "kucoin":
        return bot
    text = _read_quietly(cfg.path)
    literal = _literal_secrets(text) if text is not None else set()
    out = []
    for name in SECRET_KEYS:
        if name in literal:
            continue
        var = cfg.credential_env[name]
        out.append((var, bool(environ.get(var))))
    return out + bot


def _read_quietly(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _literal_secrets(text: str) -> set:
    """Names of the [credentials] secrets the ini text sets to a non-empty literal."""
    cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        cp.read_string(text)
    except configparser.Error:
        return set()
    if not cp.has_section("credentials"):
        return set()
    return {k for k in SECRET_KEYS if cp["credentials"].get(k, "").strip()}


def secret_file_problem(path: str) -> str:
    """'' unless the file holds a literal secret and its mode lets other users read or write
    it; then one line saying so (never the secret) and how to fix it."""
    text = _read_quietly(path)
    if text is None:
        return ""
    literal = _literal_secrets(text)
    if not literal:
        return ""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if not mode & 0o077:
        return ""
    return (f"{path} holds a literal secret ([credentials] {', '.join(sorted(literal))}) and is "
            f"readable by other users (mode {mode:04o}): run `chmod 600 {path}`, or better, move "
            f"the secret to the environment variable named by [credentials] *_env")


USAGE = """usage: python config.py CONFIG.ini

Validates CONFIG.ini (every problem on its own line, exit 2) and prints the effective config,
secrets hidden (exit 0). It needs no secret in the environment: for venue = kucoin it names
the environment variables a start will read and says whether each is set (never its value).
"""


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if len(argv) == 2 else sys.stderr)
        return 0 if len(argv) == 2 else 2
    try:
        cfg = load_config(argv[1], require_secrets=False)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return 2
    print(cfg.describe())
    for line in check_notes(cfg):
        print(line)
    return 0


def check_notes(cfg: Config, environ=None) -> list[str]:
    """What a start of this config will need or warn about, as '# ...' lines."""
    out = []
    env = needed_env(cfg, environ)
    if env:
        out.append("# a start reads secrets from these environment variables: " + ", ".join(
            f"{v} ({'set' if ok else 'NOT SET'})" for v, ok in env))
    problem = secret_file_problem(cfg.path)
    if problem:
        out.append("# WARNING: " + problem)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
